// Package harness drives sipp (SIP traffic generator) and socat (TLS
// wrapping) for end-to-end tests of edge-sbc.
//
// sipp 3.6.1 as shipped by Debian has no TLS support, so every sipp instance
// talks plain TCP to a local socat that does the TLS:
//
//	sipp UAC --TCP--> socat TCP-LISTEN -> OPENSSL --TLS--> SBC
//	SBC --TLS--> socat OPENSSL-LISTEN -> TCP --> sipp UAS
//
// The scenarios in test/sipp write TLS Vias and sips: URIs themselves. Only
// loopback addresses are used.
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LoopbackIP is the only address the harness binds to or dials.
const LoopbackIP = "127.0.0.1"

// LookTools fails the test with an install hint when sipp or socat is missing.
func LookTools(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"sipp", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("harness: %s not found in PATH; install with: apt-get install -y sip-tester socat openssl",
			strings.Join(missing, ", "))
	}
}

var (
	portMu   sync.Mutex
	usedPort = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that is currently free and has
// not been handed out before by this process.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		l, err := net.Listen("tcp", net.JoinHostPort(LoopbackIP, "0"))
		if err != nil {
			t.Fatalf("harness: FreePort: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		portMu.Lock()
		dup := usedPort[p]
		usedPort[p] = true
		portMu.Unlock()
		if !dup {
			return p
		}
	}
	t.Fatalf("harness: FreePort: no unused port found")
	return 0
}

// freeUDPRange returns a UDP port p such that p..p+n-1 are all free on
// 127.0.0.1 (sipp binds its media port and media port+2).
func freeUDPRange(t testing.TB, n int) int {
	t.Helper()
	for range 200 {
		first, err := net.ListenPacket("udp", net.JoinHostPort(LoopbackIP, "0"))
		if err != nil {
			t.Fatalf("harness: UDP port: %v", err)
		}
		p := first.LocalAddr().(*net.UDPAddr).Port
		_ = first.Close()
		if p%2 == 1 || p+n > 65535 {
			continue
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			c, err := net.ListenPacket("udp", net.JoinHostPort(LoopbackIP, strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				break
			}
			_ = c.Close()
		}
		portMu.Lock()
		for i := 0; i < n && ok; i++ {
			if usedPort[-(p + i)] {
				ok = false
			}
		}
		if ok {
			for i := range n {
				usedPort[-(p + i)] = true
			}
		}
		portMu.Unlock()
		if ok {
			return p
		}
	}
	t.Fatalf("harness: no free UDP port range")
	return 0
}

// ScenarioPath returns the absolute path of test/sipp/<name>. Absolute names
// are returned unchanged.
func ScenarioPath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("..", "sipp", name)
	}
	return filepath.Join(filepath.Dir(file), "..", "sipp", name)
}

// proc is a child process started in its own process group, so that it and
// any children it forks (socat fork mode) can be signalled together.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(name string, args []string, dir string, out *os.File) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
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

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// signalGroup signals the whole process group of p.
func (p *proc) signalGroup(sig syscall.Signal) {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop asks the process to exit with sig and kills the group after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if !p.exited() {
		p.signalGroup(sig)
		if !p.wait(grace) {
			p.signalGroup(syscall.SIGKILL)
			p.wait(5 * time.Second)
		}
	}
	// fork children of socat may outlive the parent.
	p.signalGroup(syscall.SIGKILL)
}

func (p *proc) exitCode() int {
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// waitListening waits until a TCP socket listens on 127.0.0.1:port. It reads
// /proc/net/tcp so that no probe connection disturbs the listener; where that
// is unavailable it falls back to a connect probe.
func waitListening(port int, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := procListening(port)
		if err != nil {
			c, derr := net.DialTimeout("tcp", net.JoinHostPort(LoopbackIP, strconv.Itoa(port)), 200*time.Millisecond)
			if derr == nil {
				_ = c.Close()
				ok = true
			}
		}
		if ok {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("process exited (%v) before listening on port %d", p.err, port)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s:%d after %v", LoopbackIP, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procListening(port int) (bool, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	defer f.Close()
	// local_address for 127.0.0.1 is 0100007F (little endian) or any 00000000.
	want1 := fmt.Sprintf("0100007F:%04X", port)
	want2 := fmt.Sprintf("00000000:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A = LISTEN
			continue
		}
		if fields[1] == want1 || fields[1] == want2 {
			return true, nil
		}
	}
	return false, sc.Err()
}

// readFile returns the file content or "" when it does not exist.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// tail returns at most n trailing bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
