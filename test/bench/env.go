package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

const loopback = proc.Loopback

// env is the shared state of a run: work directory, binary, PKI, and the
// processes started (stopped by cleanupProcs at the end of each section).
type env struct {
	o    options
	root string // repository root
	dir  string // work directory
	bin  string // edge-sbc binary
	pki  map[string]tlsFiles
	// kamNote is set when installing Kamailio started its system service.
	kamNote string

	mu    sync.Mutex
	procs []*proc.Proc
	seq   int
	used  map[int]bool
}

type tlsFiles struct{ cert, key, ca string }

func newEnv(o options) (*env, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "edge-sbc-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, root: root, dir: dir, used: map[int]bool{}}
	bin := o.sbcBin
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(root, bin)
	}
	if _, err := os.Stat(bin); err != nil {
		bin = filepath.Join(dir, "edge-sbc")
		logf("building %s", bin)
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/edge-sbc")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	e.bin = bin
	return e, nil
}

// repoRoot walks up from the working directory to the go.mod of edge-sbc.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/edge-sbc/edge-sbc\n") {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("run from inside the edge-sbc repository")
		}
		d = p
	}
}

func (e *env) close() {
	e.cleanupProcs()
	if e.o.keep {
		logf("work directory kept: %s", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

// devPKI makes (once) a CA and leaf certificates with edge-sbc devcert.
func (e *env) devPKI() (map[string]tlsFiles, error) {
	if e.pki != nil {
		return e.pki, nil
	}
	d := filepath.Join(e.dir, "pki")
	names := []string{"sbc.test", "caller.test", "callee.test"}
	args := []string{"devcert", "--out", d}
	for _, n := range names {
		args = append(args, "--name", n)
	}
	if out, err := exec.Command(e.bin, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("edge-sbc devcert: %v\n%s", err, out)
	}
	m := map[string]tlsFiles{}
	for _, n := range names {
		m[n] = tlsFiles{filepath.Join(d, n+".pem"), filepath.Join(d, n+".key"), filepath.Join(d, "ca.pem")}
	}
	e.pki = m
	return m, nil
}

// freePort returns a free TCP (udp=false) or UDP port on loopback not
// handed out before in this run.
func (e *env) freePort(udp bool) (int, error) {
	for range 200 {
		var p int
		if udp {
			c, err := net.ListenPacket("udp4", loopback+":0")
			if err != nil {
				return 0, err
			}
			p = c.LocalAddr().(*net.UDPAddr).Port
			_ = c.Close()
		} else {
			l, err := net.Listen("tcp4", loopback+":0")
			if err != nil {
				return 0, err
			}
			p = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
		}
		// Ports used by the SBC's media range and the relay engine are
		// avoided: they are allocated later.
		if p >= 20000 && p <= 29999 {
			continue
		}
		e.mu.Lock()
		dup := e.used[p]
		e.used[p] = true
		e.mu.Unlock()
		if !dup {
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

// start starts bin in the work directory, in its own process group, its
// output in a numbered log file there; cleanupProcs stops it.
func (e *env) start(name, bin string, args ...string) (*proc.Proc, error) {
	e.mu.Lock()
	e.seq++
	logPath := filepath.Join(e.dir, fmt.Sprintf("%02d-%s.log", e.seq, name))
	e.mu.Unlock()
	p, err := proc.Start(proc.Options{Path: bin, Args: args, Name: name, Dir: e.dir, Log: logPath})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// wait waits until p exits or ctx ends (then it is stopped).
func wait(ctx context.Context, p *proc.Proc) error {
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(syscall.SIGINT, 3*time.Second)
	}
	return p.Err()
}

func (e *env) cleanupProcs() {
	e.mu.Lock()
	ps := e.procs
	e.procs = nil
	e.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].Stop(syscall.SIGTERM, 5*time.Second)
	}
}

// waitListening is proc.WaitListening; when p exits first, the error ends
// with the tail of its log.
func waitListening(port int, timeout time.Duration, p *proc.Proc) error {
	err := proc.WaitListening(port, timeout, p)
	if err != nil && p != nil && p.Exited() {
		err = fmt.Errorf("%w\n%s", err, p.LogTail(2000))
	}
	return err
}

func socatEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`, `!`, `\!`, `'`, `\'`, `"`, `\"`).Replace(s)
}

// tlsClientProxy: TCP-LISTEN on loopback (fork) -> OPENSSL to target with
// a client certificate, verifying the server name. Returns the TCP port.
func (e *env) tlsClientProxy(target string, files tlsFiles, serverName string) (int, error) {
	port, err := e.freePort(false)
	if err != nil {
		return 0, err
	}
	host, tport, _ := net.SplitHostPort(target)
	remote := strings.Join([]string{"OPENSSL:" + host + ":" + tport, "verify=1",
		"cafile=" + socatEscape(files.ca), "cert=" + socatEscape(files.cert), "key=" + socatEscape(files.key),
		"commonname=" + serverName, "snihost=" + serverName}, ",")
	listen := fmt.Sprintf("TCP-LISTEN:%d,bind=%s,fork,reuseaddr,backlog=1024", port, loopback)
	p, err := e.start("socat-client", "socat", "-lh", listen, remote)
	if err != nil {
		return 0, err
	}
	return port, waitListening(port, 5*time.Second, p)
}

// tlsServerProxy: OPENSSL-LISTEN (fork, client certificate required) ->
// TCP to loopback:backend. Returns the TLS port.
func (e *env) tlsServerProxy(files tlsFiles, backend int) (int, error) {
	port, err := e.freePort(false)
	if err != nil {
		return 0, err
	}
	return port, e.tlsServerProxyOn(files, port, backend)
}

// tlsServerProxyOn is tlsServerProxy on a given port.
func (e *env) tlsServerProxyOn(files tlsFiles, port, backend int) error {
	listen := strings.Join([]string{fmt.Sprintf("OPENSSL-LISTEN:%d", port), "bind=" + loopback, "fork", "reuseaddr", "backlog=1024",
		"cert=" + socatEscape(files.cert), "key=" + socatEscape(files.key), "cafile=" + socatEscape(files.ca), "verify=1"}, ",")
	p, err := e.start("socat-server", "socat", "-lh", listen, fmt.Sprintf("TCP:%s:%d", loopback, backend))
	if err != nil {
		return err
	}
	return waitListening(port, 5*time.Second, p)
}

// sbcConfig is the configuration of the SBC under test: mutual TLS
// listener, callee trunk behind tlsServerProxy, log level warn, metrics on.
func sbcConfig(pki map[string]tlsFiles, mtls, callee, metrics int, portRange string) string {
	return fmt.Sprintf(`
node:
  fqdn: sbc.test
  domains: [sbc.test]
tls:
  cert: %[1]s
  key: %[2]s
  ca: %[3]s
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: inside, uri: "sips:127.0.0.1:%[5]d", identity: callee.test }
routes:
  - { from: outside, to: inside }
media:
  port_range: "%[7]s"
  bind: 127.0.0.1
  timeout: 600s
log: { level: warn, format: json }
shutdown: { drain_timeout: 2s }
metrics: { listen: "127.0.0.1:%[6]d", pprof: true }
`, pki["sbc.test"].cert, pki["sbc.test"].key, pki["sbc.test"].ca, mtls, callee, metrics, portRange)
}

// startSBC starts edge-sbc and waits for /readyz.
func (e *env) startSBC(cfg string, metrics int) (*proc.Proc, error) {
	path := filepath.Join(e.dir, fmt.Sprintf("edge-sbc-%d.yaml", metrics))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := e.start("edge-sbc", e.bin, "run", "--config", path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", metrics))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("edge-sbc not ready: %v\n%s", p.Err(), p.LogTail(3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads the SBC's Prometheus text exposition: name{labels} -> value.
func scrape(port int) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}
