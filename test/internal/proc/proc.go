// Package proc runs the child processes of edge-sbc's end-to-end tests
// (test/harness), benchmark (test/bench) and soak test (test/soak): sipp,
// socat and edge-sbc itself, each in its own process group so that it and
// the children it forks (socat in fork mode) are signalled together. It
// also reads sipp's -trace_stat statistics. It does not import testing:
// the benchmark and the soak test are commands.
package proc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options describe a process to start.
type Options struct {
	// Path is the program (looked up in PATH when it has no slash).
	Path string
	// Args are its arguments.
	Args []string
	// Name names it in errors; default the base name of Path.
	Name string
	// Dir is its working directory; default the current one.
	Dir string
	// Log is the file its stdout and stderr go to (created, truncated);
	// empty: discarded. The file is closed when the process has exited.
	Log string
}

// Proc is a started child process. Its methods are safe for concurrent
// use. The goroutine that waits for the process is its own; it ends when
// the process exits (Stop makes sure it does).
type Proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit status, once done is closed
}

// Start starts the process in a new process group.
func Start(o Options) (*Proc, error) {
	name := o.Name
	if name == "" {
		name = filepath.Base(o.Path)
	}
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Dir = o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out *os.File
	if o.Log != "" {
		f, err := os.Create(o.Log)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		out = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if out != nil {
			_ = out.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, log: o.Log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if out != nil {
			_ = out.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Name is the name given in Options (or the program's base name).
func (p *Proc) Name() string { return p.name }

// Pid is the process id, which is also the id of its process group.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log is the path of its output file ("" when discarded).
func (p *Proc) Log() string { return p.log }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit status as exec reports it (nil for exit 0); nil while
// the process runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to d for the process to exit and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// ExitCode is the exit status: 0-255, 128+signal when a signal ended it,
// -1 while it runs.
func (p *Proc) ExitCode() int {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return -1
	}
	if st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		return 128 + int(st.Signal())
	}
	return p.cmd.ProcessState.ExitCode()
}

// CPU is the user and system time the process used; 0 while it runs.
func (p *Proc) CPU() time.Duration {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.Pid(), sig)
}

// Stop asks the process to exit with sig, kills the group after grace, and
// then kills what is left of the group (fork children may outlive the
// parent). A nil Proc is a no-op.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	if p == nil {
		return
	}
	if !p.Exited() {
		p.Signal(sig)
		if !p.Wait(grace) {
			p.Signal(syscall.SIGKILL)
			p.Wait(5 * time.Second)
		}
	}
	p.Signal(syscall.SIGKILL)
}

// LogTail returns at most n trailing bytes of the output file.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.log)
	return Tail(string(b), n)
}

// WaitLog waits up to d until the output file contains substr; it fails
// early when the process exits first.
func (p *Proc) WaitLog(substr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(p.log)
		if strings.Contains(string(b), substr) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before logging %q:\n%s", p.name, p.err, substr, Tail(string(b), 3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %q not logged within %s", p.name, substr, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns at most n trailing bytes of s, marked with "..." when cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Loopback is the address the tests' processes listen on.
const Loopback = "127.0.0.1"

// WaitListening waits up to timeout until a TCP socket listens on
// 127.0.0.1:port (or on any address, port). It reads /proc/net/tcp, so
// that no probe connection disturbs the listener (socat in fork mode would
// serve it); where that file is unreadable it connects. It fails early
// when p (if not nil) exits first.
func WaitListening(port int, timeout time.Duration, p *Proc) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := Listening(port)
		if err != nil {
			c, derr := net.DialTimeout("tcp", net.JoinHostPort(Loopback, strconv.Itoa(port)), 200*time.Millisecond)
			if derr == nil {
				_ = c.Close()
				ok = true
			}
		}
		if ok {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited (%v) before listening on port %d", p.name, p.err, port)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s:%d after %v", Loopback, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening reports whether /proc/net/tcp lists a TCP socket listening on
// 127.0.0.1:port or on the IPv4 wildcard address with that port.
func Listening(port int) (bool, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	defer f.Close()
	// local_address for 127.0.0.1 is 0100007F (little endian), any 00000000.
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
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("/proc/net/tcp: %w", err)
	}
	return false, nil
}
