package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// redisServer is a redis-server of one test: 127.0.0.1, a random port, a
// temporary directory, no persistence.
type redisServer struct {
	t     *testing.T
	bin   string
	port  int
	dir   string
	extra []string
	tls   bool // the port is a TLS port (extra names the files)
	// master, when set, makes this a Sentinel watching master as "m".
	master *redisServer
	cmd    *exec.Cmd
	out    *lockedBuffer
	exit   chan struct{}
}

// startRedis starts a redis-server for t, or skips t when there is none.
func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	return launchRedis(t, false, extra)
}

func launchRedis(t *testing.T, tls bool, extra []string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server, or make test-deps): the cluster tests need a real Redis")
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), extra: extra, tls: tls}
	t.Cleanup(r.stop)
	for try := 0; ; try++ {
		r.port = freePort(t)
		err := r.start()
		if err == nil {
			return r
		}
		if try == 4 {
			t.Fatalf("redis-server: %v\n%s", err, r.out)
		}
	}
}

// startSentinel starts a Sentinel that names master as "m".
func startSentinel(t *testing.T, master *redisServer) *redisServer {
	t.Helper()
	r := &redisServer{t: t, bin: master.bin, dir: t.TempDir(), master: master}
	t.Cleanup(r.stop)
	for try := 0; ; try++ {
		r.port = freePort(t)
		err := r.start()
		if err == nil {
			return r
		}
		if try == 4 {
			t.Fatalf("sentinel: %v\n%s", err, r.out)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// start runs redis-server on r.port and waits until it answers.
func (r *redisServer) start() error {
	ports := []string{"--port", strconv.Itoa(r.port)}
	if r.tls {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port)}
	}
	args := append(append(ports,
		"--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
		"--logfile", "", "--loglevel", "warning",
	), r.extra...)
	if r.master != nil {
		conf := filepath.Join(r.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor m 127.0.0.1 %d 1\n", r.port, r.dir, r.master.port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		args = []string{conf, "--sentinel", "--logfile", "", "--loglevel", "warning"}
	}
	r.out = &lockedBuffer{}
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
		c, err := net.DialTimeout("tcp", r.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop()
	return fmt.Errorf("not listening on %s after 5s", r.addr())
}

// stop kills the server (SIGKILL: no goodbye to its clients) and waits.
func (r *redisServer) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}

// restart starts the server again on the same port, empty.
func (r *redisServer) restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("redis-server restart: %v\n%s", err, r.out)
	}
}

// raw is a plain client for looking at what the nodes wrote.
func (r *redisServer) raw(t *testing.T, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr(), Password: password, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines hold s.
func (l *lockedBuffer) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

var testKey = bytes.Repeat([]byte{0x42}, KeySize)

// node opens and starts a Cluster named id on r; mod adjusts the Options.
func node(t *testing.T, r *redisServer, id string, log io.Writer, mod func(*Options)) *Cluster {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	o := Options{
		NodeID: id, Key: testKey, Log: zerolog.New(log),
		Redis: RedisOptions{Addrs: []string{r.addr()}},
	}
	if mod != nil {
		mod(&o)
	}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond every 20ms until it holds or d passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy stands between one node and Redis, so that the test can cut that
// node off (a partition) while the others still reach Redis.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
		p.mu.Unlock()
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// setCut cuts every connection and refuses new ones, or lets them again.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}
