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
)

const loopback = "127.0.0.1"

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
	procs []*proc
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

// proc is a child process in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (e *env) start(name, bin string, args ...string) (*proc, error) {
	e.mu.Lock()
	e.seq++
	logPath := filepath.Join(e.dir, fmt.Sprintf("%02d-%s.log", e.seq, name))
	e.mu.Unlock()
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits until the process exits or ctx ends (then it is stopped).
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(syscall.SIGINT, 3*time.Second)
	}
	return p.err
}

// stop signals the process group with sig, then SIGKILL after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	pid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pid, sig)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // socat fork children
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (e *env) cleanupProcs() {
	e.mu.Lock()
	ps := e.procs
	e.procs = nil
	e.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop(syscall.SIGTERM, 5*time.Second)
	}
}

// waitListening waits for a TCP listener on loopback:port (read from
// /proc/net/tcp, no probe connection).
func waitListening(port int, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	want := fmt.Sprintf("0100007F:%04X", port)
	for {
		if b, err := os.ReadFile("/proc/net/tcp"); err == nil {
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) > 3 && f[3] == "0A" && f[1] == want {
					return nil
				}
			}
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on %d: %v\n%s", p.name, port, p.err, p.tail(2000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s:%d after %v", loopback, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
metrics: { listen: "127.0.0.1:%[6]d" }
`, pki["sbc.test"].cert, pki["sbc.test"].key, pki["sbc.test"].ca, mtls, callee, metrics, portRange)
}

// startSBC starts edge-sbc and waits for /readyz.
func (e *env) startSBC(cfg string, metrics int) (*proc, error) {
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
		if p.exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("edge-sbc not ready: %v\n%s", p.err, p.tail(3000))
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
