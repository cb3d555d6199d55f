package siptest

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Redis is a redis-server of one test: 127.0.0.1, a random port, a
// temporary directory, no persistence. It is killed when the test ends.
type Redis struct {
	t    testing.TB
	host string
	bin  string
	dir  string
	Port int
	cmd  *exec.Cmd
	out  *SyncBuffer
	exit chan struct{}
}

// StartRedis starts a redis-server for t, or skips t when none is
// installed (make test-deps installs Debian's redis-server).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return StartRedisOn(t, "127.0.0.1")
}

// StartRedisOn is StartRedis listening on host (an IPv4 address of this
// host, or of the test's network namespace).
func StartRedisOn(t testing.TB, host string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server, or make test-deps): the cluster tests need a real Redis")
	}
	r := &Redis{t: t, host: host, bin: bin, dir: t.TempDir()}
	t.Cleanup(r.Kill)
	for try := 0; ; try++ {
		r.Port = freeTCPPort(t, r.host)
		err := r.start()
		if err == nil {
			return r
		}
		if try == 4 {
			t.Fatalf("redis-server: %v\n%s", err, r.out)
		}
	}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort(r.host, strconv.Itoa(r.Port)) }

func freeTCPPort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs redis-server on r.Port and waits until it accepts.
func (r *Redis) start() error {
	r.out = &SyncBuffer{}
	// Protected mode refuses clients from other addresses than loopback
	// when Redis has no password: off for a test's own namespace.
	protected := "yes"
	if ip := net.ParseIP(r.host); ip == nil || !ip.IsLoopback() {
		protected = "no"
	}
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.Port), "--bind", r.host, "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", protected,
		"--logfile", "", "--loglevel", "warning")
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
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}
