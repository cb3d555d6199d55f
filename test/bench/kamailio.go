package main

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// The baseline of section 1: Kamailio (Debian's kamailio +
// kamailio-tls-modules, 5.6 on bookworm) as a stateful, record-routing
// proxy with mutual TLS, configured by kamailio/kamailio.cfg and
// kamailio/tls.cfg and run by the bench in its own work directory.

//go:embed kamailio/kamailio.cfg kamailio/tls.cfg
var kamailioFiles embed.FS

// kamailioDebs are the Debian packages the baseline needs.
var kamailioDebs = []string{"kamailio", "kamailio-tls-modules"}

const (
	kamailioShmMB = 512 // -m: shared memory (transactions, TLS state)
	kamailioPkgMB = 16  // -M: private memory per process
)

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

type kamailioInstall struct {
	bin, mpath, version string
	how                 string
}

// findKamailio returns the kamailio binary and the module directory that
// holds tls.so; with install set (the default) it installs the Debian
// packages when either is missing. Debian's package enables a system
// service; the bench never uses it (it runs its own instance on loopback).
func (e *env) findKamailio() (*kamailioInstall, error) {
	k, err := lookKamailio()
	if err == nil {
		k.how = "already installed"
		return k, nil
	}
	if !e.o.install {
		return nil, fmt.Errorf("%v (-install=false)", err)
	}
	if err := aptInstall(err.Error(), kamailioDebs...); err != nil {
		return nil, err
	}
	if k, err = lookKamailio(); err != nil {
		return nil, err
	}
	k.how = "installed now: apt-get install " + strings.Join(kamailioDebs, " ")
	if out, err := exec.Command("systemctl", "is-active", "kamailio").Output(); err == nil && strings.TrimSpace(string(out)) == "active" {
		e.kamNote = "the Debian package started kamailio.service (port 5060 on all addresses); the bench does not use it: systemctl disable --now kamailio"
		logf("  note: %s", e.kamNote)
	}
	return k, nil
}

func lookKamailio() (*kamailioInstall, error) {
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/kamailio"); err2 != nil {
			return nil, errors.New("kamailio not found")
		}
		bin = "/usr/sbin/kamailio"
	}
	k := &kamailioInstall{bin: bin}
	globs := []string{"/usr/lib/*/kamailio/modules/tls.so", "/usr/lib/kamailio/modules/tls.so",
		"/usr/local/lib64/kamailio/modules/tls.so", "/usr/local/lib/kamailio/modules/tls.so"}
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			k.mpath = filepath.Dir(m[0]) + "/"
			break
		}
	}
	if k.mpath == "" {
		return nil, errors.New("kamailio's tls module (kamailio-tls-modules) not found")
	}
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	k.version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(first), "version:"))
	if k.version == "" {
		k.version = "kamailio"
	}
	return k, nil
}

// shortVersion is "Kamailio 5.6.3" from "kamailio 5.6.3 (x86_64/linux)".
func (k *kamailioInstall) shortVersion() string {
	f := strings.Fields(k.version)
	if len(f) >= 2 {
		return "Kamailio " + f[1]
	}
	return "Kamailio"
}

// startKamailio writes the configuration for a TLS listener on port that
// relays every new call to the callee's TLS listener on callee, and starts
// kamailio in the foreground (its own process group: all its processes are
// measured together).
func (e *env) startKamailio(k *kamailioInstall, port, callee int) (*proc.Proc, error) {
	pki, err := e.devPKI()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, fmt.Sprintf("kamailio-%d", port))
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		return nil, err
	}
	sbc := pki["sbc.test"]
	vars := map[string]string{
		"PORT":         strconv.Itoa(port),
		"CALLEE_PORT":  strconv.Itoa(callee),
		"TCP_CHILDREN": strconv.Itoa(e.o.kamWorkers),
		"MPATH":        k.mpath,
		"TLS_CFG":      filepath.Join(dir, "tls.cfg"),
		"CERT":         sbc.cert,
		"KEY":          sbc.key,
		"CA":           sbc.ca,
	}
	for _, name := range []string{"kamailio.cfg", "tls.cfg"} {
		b, err := kamailioFiles.ReadFile("kamailio/" + name)
		if err != nil {
			return nil, err
		}
		s := string(b)
		for k, v := range vars {
			s = strings.ReplaceAll(s, "@"+k+"@", v)
		}
		if left := placeholder.FindString(s); left != "" {
			return nil, fmt.Errorf("kamailio/%s: placeholder %s not filled in", name, left)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			return nil, err
		}
	}
	p, err := e.start("kamailio", k.bin, "-f", filepath.Join(dir, "kamailio.cfg"), "-DD", "-E",
		"-Y", filepath.Join(dir, "run"), "-m", strconv.Itoa(kamailioShmMB), "-M", strconv.Itoa(kamailioPkgMB))
	if err != nil {
		return nil, err
	}
	return p, waitListening(port, 15*time.Second, p)
}

// aptInstall installs Debian packages (as root), saying so and why.
func aptInstall(why string, debs ...string) error {
	list := strings.Join(debs, " ")
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s; install as root: apt-get install -y %s", why, list)
	}
	logf("  installing: %s (Debian; %s)", list, why)
	sh := "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq " + list
	if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", sh, err, lastLines(string(out), 5))
	}
	return nil
}
