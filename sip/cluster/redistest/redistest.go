// Package redistest runs a real redis-server (or a Sentinel) for one test:
// a random port, a temporary directory, no persistence, killed when the
// test ends. It is shared by the cluster package's own tests and by
// sip/siptest, and imports nothing of the project, so both can use it.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

// Options says how to start a server. The zero value is a plain server
// on 127.0.0.1.
type Options struct {
	Host  string   // address to listen on (an IPv4 address of this host or of the test's namespace); default 127.0.0.1
	Extra []string // more redis-server arguments (e.g. --requirepass, the TLS files)
	TLS   bool     // the port is a TLS port (Extra names the files)
}

// Server is a redis-server of one test.
type Server struct {
	t      testing.TB
	o      Options
	bin    string
	dir    string
	master *Server // set: a Sentinel watching master as "m"
	Port   int
	cmd    *exec.Cmd
	out    *syncbuf.Buffer
	exit   chan struct{}
}

// Start starts a redis-server for t, or skips t when none is installed
// (make test-deps installs Debian's redis-server).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server, or make test-deps): the cluster tests need a real Redis")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	return launch(t, &Server{t: t, o: o, bin: bin, dir: t.TempDir()}, "redis-server")
}

// StartSentinel starts a Sentinel that names master as "m".
func StartSentinel(t testing.TB, master *Server) *Server {
	t.Helper()
	return launch(t, &Server{t: t, o: Options{Host: master.o.Host}, bin: master.bin, dir: t.TempDir(), master: master}, "sentinel")
}

// launch starts r on a free port, trying another one when the port was
// taken meanwhile.
func launch(t testing.TB, r *Server, what string) *Server {
	t.Helper()
	t.Cleanup(r.Kill)
	for try := 0; ; try++ {
		r.Port = freePort(t, r.o.Host)
		err := r.start()
		if err == nil {
			return r
		}
		if try == 4 {
			t.Fatalf("%s: %v\n%s", what, err, r.out)
		}
	}
}

// Addr is the server's host:port.
func (r *Server) Addr() string { return net.JoinHostPort(r.o.Host, strconv.Itoa(r.Port)) }

// Output is what the server printed since it was last started.
func (r *Server) Output() string { return r.out.String() }

func freePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server on r.Port and waits until it accepts.
func (r *Server) start() error {
	ports := []string{"--port", strconv.Itoa(r.Port)}
	if r.o.TLS {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(r.Port)}
	}
	// Protected mode refuses clients from other addresses than loopback
	// when Redis has no password: off for a test's own namespace.
	protected := "yes"
	if ip := net.ParseIP(r.o.Host); ip == nil || !ip.IsLoopback() {
		protected = "no"
	}
	args := append(append(ports,
		"--bind", r.o.Host, "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", protected,
		"--logfile", "", "--loglevel", "warning",
	), r.o.Extra...)
	if r.master != nil {
		conf := filepath.Join(r.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind %s\ndir %s\nsentinel monitor m %s %d 1\n", r.Port, r.o.Host, r.dir, r.master.o.Host, r.master.Port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		args = []string{conf, "--sentinel", "--logfile", "", "--loglevel", "warning"}
	}
	r.out = &syncbuf.Buffer{}
	r.cmd = exec.Command(r.bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.exit = make(chan struct{})
	go func(cmd *exec.Cmd, exit chan struct{}) { _ = cmd.Wait(); close(exit) }(r.cmd, r.exit)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exit:
			return fmt.Errorf("exited early")
		default:
		}
		if c, err := net.DialTimeout("tcp", r.Addr(), 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Kill()
	return fmt.Errorf("not listening on %s after 5s", r.Addr())
}

// Kill kills the server (SIGKILL: no goodbye to its clients) and waits.
func (r *Server) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}

// Restart starts the server again on the same port, empty.
func (r *Server) Restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("redis-server restart: %v\n%s", err, r.out)
	}
}
