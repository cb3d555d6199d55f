package cluster

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/sip/cluster/redistest"
)

// startRedis starts a redis-server for t (redistest), or skips t when
// there is none; extra are more redis-server arguments.
func startRedis(t *testing.T, extra ...string) *redistest.Server {
	t.Helper()
	return redistest.Start(t, redistest.Options{Extra: extra})
}

// raw is a plain client for looking at what the nodes wrote to r.
func raw(t *testing.T, r *redistest.Server, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), Password: password, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

var testKey = bytes.Repeat([]byte{0x42}, KeySize)

// node opens and starts a Cluster named id on r; mod adjusts the Options.
func node(t *testing.T, r *redistest.Server, id string, log io.Writer, mod func(*Options)) *Cluster {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	o := Options{
		NodeID: id, Key: testKey, Log: zerolog.New(log),
		Redis: RedisOptions{Addrs: []string{r.Addr()}},
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
