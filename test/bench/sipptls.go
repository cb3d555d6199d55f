package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The load tool of section 1. Debian's sipp (bookworm: 3.6.1) has no TLS;
// the TLS-native sipp is Debian trixie's sip-tester 3.7.3 (wolfSSL) unpacked
// into a private prefix by tools/sipp-tls/install.sh of the shared tools
// (with an LD_PRELOAD fix for wolfSSL_get_fd). It speaks TLS itself (-t l1:
// one TLS connection per side) and presents -tls_cert; as a server with
// -tls_ca it also verifies the client's certificate.

// defaultSippTLSPrefix is where the bench installs sipp-tls when missing:
// outside the repository so that every clone and worktree shares it and
// `make clean` keeps it.
const defaultSippTLSPrefix = "/var/tmp/edge-sbc-sipp-tls"

// loadTool is the sipp the call-rate section runs.
type loadTool struct {
	// native: sipp-tls with -t l1 and certificates; otherwise Debian's
	// sipp in -t t1 behind socat (OpenSSL) on both sides.
	native bool
	bin    string
	// how says how it was found or installed, why the reason for the
	// fallback.
	how, why string
}

func (t loadTool) name() string {
	if t.native {
		return "sipp-tls"
	}
	return "socat"
}

func (t loadTool) describe() string {
	if t.native {
		return fmt.Sprintf("TLS-native sipp (%s, %s): -t l1, one TLS connection per side, mutual TLS on both legs", t.bin, t.how)
	}
	return "Debian's sipp without TLS behind socat (OpenSSL) on both sides, -t t1 (fallback: " + t.why + ")"
}

// sippTLSInstaller returns the install script of the shared tools: the
// -sipp-tls-install flag (or $SIPP_TLS_INSTALL), else ../shared/tools next
// to the repository, or next to the main checkout of a git worktree.
func (e *env) sippTLSInstaller() string {
	if e.o.sippTLSInstall != "" {
		return e.o.sippTLSInstall
	}
	rel := filepath.Join("shared", "tools", "sipp-tls", "install.sh")
	cands := []string{filepath.Join(filepath.Dir(e.root), rel)}
	if out, err := exec.Command("git", "-C", e.root, "rev-parse", "--path-format=absolute", "--git-common-dir").Output(); err == nil {
		// <main checkout>/.git -> <main checkout>/../shared/...
		main := filepath.Dir(strings.TrimSpace(string(out)))
		cands = append(cands, filepath.Join(filepath.Dir(main), rel))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	return ""
}

// chooseLoadTool finds or installs sipp-tls and checks it with a few calls
// sipp-tls to sipp-tls; when any of that fails it falls back to sipp behind
// socat and says why.
func (e *env) chooseLoadTool(ctx context.Context) loadTool {
	if e.o.socat {
		return loadTool{why: "-socat given"}
	}
	bin, how, err := e.findSippTLS(ctx)
	if err != nil {
		logf("  sipp-tls unavailable: %v; falling back to sipp behind socat", err)
		return loadTool{why: err.Error()}
	}
	if err := e.selfTestSippTLS(ctx, bin); err != nil {
		logf("  sipp-tls self-test failed: %v; falling back to sipp behind socat", err)
		return loadTool{why: "sipp-tls self-test: " + err.Error()}
	}
	logf("  load tool: %s (%s)", bin, how)
	return loadTool{native: true, bin: bin, how: how}
}

// findSippTLS returns a working sipp-tls: -sipp-tls, else PREFIX/bin/sipp-tls
// when it reports TLS, else the result of the shared install script run
// into PREFIX (under a lock: several benches may start at once).
func (e *env) findSippTLS(ctx context.Context) (bin, how string, err error) {
	if e.o.sippTLS != "" {
		if !hasTLS(e.o.sippTLS) {
			return "", "", fmt.Errorf("%s (-sipp-tls) has no TLS", e.o.sippTLS)
		}
		return e.o.sippTLS, "given with -sipp-tls", nil
	}
	prefix := e.o.sippTLSPrefix
	bin = filepath.Join(prefix, "bin", "sipp-tls")
	if hasTLS(bin) {
		return bin, "already installed", nil
	}
	if err := os.MkdirAll(filepath.Dir(prefix), 0o755); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(prefix+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if hasTLS(bin) {
		return bin, "installed by a concurrent run", nil
	}
	script := e.sippTLSInstaller()
	if script == "" {
		return "", "", errors.New("sipp-tls is not installed in " + prefix + " and its install script (shared/tools/sipp-tls/install.sh) was not found; give it with -sipp-tls-install or SIPP_TLS_INSTALL")
	}
	if !e.o.install {
		return "", "", errors.New("sipp-tls is not installed in " + prefix + " (-install=false)")
	}
	// The script compiles its LD_PRELOAD fix and unpacks Debian packages.
	var need []string
	for tool, deb := range map[string]string{"gcc": "gcc", "dpkg-deb": "dpkg", "apt-get": "apt"} {
		if _, err := exec.LookPath(tool); err != nil {
			need = append(need, deb)
		}
	}
	if len(need) > 0 {
		slices.Sort(need)
		if err := aptInstall("the sipp-tls install script needs them", need...); err != nil {
			return "", "", err
		}
	}
	logf("  installing sipp-tls: %s %s (Debian trixie's sip-tester 3.7.3 + wolfSSL unpacked into the prefix; apt sources of the system untouched)", script, prefix)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "bash", script, prefix)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("%s %s: %v: %s", script, prefix, err, lastLines(out.String(), 5))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if p := strings.TrimSpace(lines[len(lines)-1]); p != "" && hasTLS(p) {
		return p, "installed now by " + script, nil
	}
	return "", "", fmt.Errorf("%s did not leave a sipp-tls with TLS: %s", script, lastLines(out.String(), 5))
}

func hasTLS(bin string) bool {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	return bytes.Contains(out, []byte("TLS"))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// selfTestSippTLS runs 20 calls sipp-tls -> sipp-tls over mutual TLS: it
// shows that the unpacked sipp sends SIP over TLS at all (the failure the
// LD_PRELOAD fix is for is a completed handshake and then silence).
func (e *env) selfTestSippTLS(ctx context.Context, bin string) error {
	pki, err := e.devPKI()
	if err != nil {
		return err
	}
	tool := loadTool{native: true, bin: bin}
	callee := pki["callee.test"]
	uas, ur, err := e.startUAS(tool, scenario(e, "uas_basic.xml"), "selftest-uas", &callee)
	if err != nil {
		return err
	}
	defer e.forget(uas)
	caller := pki["caller.test"]
	r := &sippRun{tool: tool, tls: &caller, scenario: scenario(e, "uac_basic.xml"), remote: fmt.Sprintf("%s:%d", loopback, ur.port),
		rate: 20, calls: 20, pause: 10 * time.Millisecond, timeout: 15 * time.Second}
	res, _, err := e.runUAC(ctx, r, "selftest-uac")
	if err != nil {
		return err
	}
	if res.succ != r.calls {
		return fmt.Errorf("%d/%d calls successful (%s); sipp logs in %s", res.succ, r.calls, res.why, e.dir)
	}
	return nil
}

// sipp is the binary to run.
func (t loadTool) sipp() string {
	if t.native {
		return t.bin
	}
	return "sipp"
}
