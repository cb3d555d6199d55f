package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

// RepoRoot is the repository root (found from this source file).
func RepoRoot() string {
	return filepath.Dir(filepath.Dir(filepath.Dir(ScenarioPath("x"))))
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// Binary builds bin/edge-sbc once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edge-sbc-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		p := filepath.Join(dir, "edge-sbc")
		cmd := exec.Command("go", "build", "-o", p, "./cmd/edge-sbc")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		buildOnce.path = p
	})
	if buildOnce.err != nil {
		t.Fatalf("build edge-sbc: %v", buildOnce.err)
	}
	return buildOnce.path
}

// DevPKI runs `edge-sbc devcert` into dir for names and returns the files
// of each name (CA shared).
func DevPKI(t testing.TB, dir string, names ...string) map[string]TLSFiles {
	t.Helper()
	args := []string{"devcert", "--out", dir}
	for _, n := range names {
		args = append(args, "--name", n)
	}
	cmd := exec.Command(Binary(t), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("edge-sbc devcert: %v\n%s", err, out)
	}
	m := map[string]TLSFiles{}
	for _, n := range names {
		m[n] = TLSFiles{Cert: filepath.Join(dir, n+".pem"), Key: filepath.Join(dir, n+".key"), CA: filepath.Join(dir, "ca.pem")}
	}
	return m
}

// SBC is a running edge-sbc process.
type SBC struct {
	// ConfigPath is the config file the SBC runs with (rewrite it and send
	// SIGHUP to test reloads).
	ConfigPath string

	t    testing.TB
	cmd  *exec.Cmd
	logs syncbuf.Buffer
	done chan struct{}
	err  error
	// killed: Kill ended the process (Stop then reports no error).
	killed bool
}

// StartSBC writes config to a temp file, starts `edge-sbc run --config`,
// and returns once it logged "edge-sbc ready". It is stopped with SIGTERM at
// cleanup, and the test fails if it does not exit 0.
func StartSBC(t testing.TB, config string) *SBC {
	t.Helper()
	return StartSBCWith(t, config)
}

// StartSBCWith is StartSBC with the process started through wrap (a
// command and its arguments that exec the rest, such as `ip netns exec
// NS`): the process signalled and killed is then the SBC itself.
func StartSBCWith(t testing.TB, config string, wrap ...string) *SBC {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "edge-sbc.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &SBC{t: t, done: make(chan struct{}), ConfigPath: path}
	argv := append(append(append([]string(nil), wrap...), Binary(t)), "run", "--config", path)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = pw
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start edge-sbc: %v", err)
	}
	_ = pw.Close()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			_, _ = s.logs.Write([]byte(line + "\n"))
			if strings.Contains(line, "edge-sbc ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	select {
	case <-ready:
	case <-s.done:
		t.Fatalf("edge-sbc exited at start: %v\n%s", s.err, s.Logs())
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatalf("edge-sbc not ready in 15s\n%s", s.Logs())
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("edge-sbc stop: %v\n%s", err, s.Logs())
		}
		if t.Failed() {
			t.Logf("edge-sbc log:\n%s", s.Logs())
		}
	})
	return s
}

// Stop sends SIGTERM and waits for a clean exit (it is idempotent).
func (s *SBC) Stop() error {
	select {
	case <-s.done:
		if s.killed {
			return nil
		}
		return s.err
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(40 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("edge-sbc did not exit within 40s of SIGTERM")
	}
}

// Kill ends the process with SIGKILL (a node lost: nothing is cleaned up)
// and waits for it to exit.
func (s *SBC) Kill() {
	s.killed = true
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Signal sends sig to the process.
func (s *SBC) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (s *SBC) Done() <-chan struct{} { return s.done }

// Logs returns everything the SBC printed so far.
func (s *SBC) Logs() string { return s.logs.String() }

// WaitLog waits until the log contains substr.
func (s *SBC) WaitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.Logs(), substr) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
