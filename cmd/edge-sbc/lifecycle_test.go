package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// fakeB2BUA stands in for *sip.B2BUA in reload and drain.
type fakeB2BUA struct {
	conf     *config.Config
	reloaded []*config.Config
	calls    atomic.Int32
	idle     chan struct{} // signalled when calls drop to 0, as the B2BUA does
}

func newFakeB2BUA(calls int) *fakeB2BUA {
	f := &fakeB2BUA{idle: make(chan struct{}, 1)}
	f.calls.Store(int32(calls))
	return f
}

func (f *fakeB2BUA) Conf() *config.Config { return f.conf }
func (f *fakeB2BUA) Reload(c *config.Config) error {
	f.reloaded = append(f.reloaded, c)
	f.conf = c
	return nil
}
func (f *fakeB2BUA) ActiveCalls() int { return int(f.calls.Load()) }

// setCalls changes the number of calls; reaching 0 wakes WaitIdle.
func (f *fakeB2BUA) setCalls(n int) {
	f.calls.Store(int32(n))
	if n == 0 {
		select {
		case f.idle <- struct{}{}:
		default:
		}
	}
}

func (f *fakeB2BUA) WaitIdle(ctx context.Context) error {
	for f.ActiveCalls() > 0 {
		select {
		case <-f.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// reloadFixture writes a dev PKI and a config file; yaml(extra) renders
// the file with extra appended.
type reloadFixture struct {
	path string
	yaml func(extra string) string
}

func newReloadFixture(t *testing.T) reloadFixture {
	t.Helper()
	dir := t.TempDir()
	pki, err := tlsconf.WriteDevPKI(filepath.Join(dir, "pki"), []string{"sbc.reload.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	us := pki.Leaves["sbc.reload.test"]
	base := fmt.Sprintf(`node: {fqdn: sbc.reload.test}
tls: {cert: %q, key: %q, ca: %q}
listen:
  - {addr: "127.0.0.1:15061"}
trunks:
  - {name: a, identity: a.reload.test}
  - {name: b, uri: "sips:127.0.0.1:15081", identity: b.reload.test}
routes:
  - {from: a, to: b}
`, us.Cert, us.Key, pki.CA)
	return reloadFixture{
		path: filepath.Join(dir, "edge-sbc.yaml"),
		yaml: func(extra string) string { return base + extra },
	}
}

func (f reloadFixture) write(t *testing.T, extra string) {
	t.Helper()
	if err := os.WriteFile(f.path, []byte(f.yaml(extra)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadRefusesStartOnlyKeys: the reload function refuses a file that
// changes start-only settings, naming each, and applies nothing; a file
// that changes only live settings is applied.
func TestReloadRefusesStartOnlyKeys(t *testing.T) {
	prev := zerolog.GlobalLevel()
	t.Cleanup(func() { zerolog.SetGlobalLevel(prev) })
	f := newReloadFixture(t)
	start := "media: {bind: 127.0.0.1, port_range: \"40000-40099\"}\nlog: {level: info}\n"
	f.write(t, start)
	cfg, err := config.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tlsconf.LoadStore(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	b2b := &fakeB2BUA{conf: cfg}

	for _, tc := range []struct {
		name, extra string
		applied     bool
		want        []string
	}{
		{"media.bind", "media: {bind: 127.0.0.2, port_range: \"40000-40099\"}\nlog: {level: info}\n", false,
			[]string{"reload refused: start-only keys changed: media.bind; restart needed"}},
		{"several start-only keys", "media: {bind: 127.0.0.1, port_range: \"40000-40199\", timeout: 0s}\nsip: {keepalive_interval: 0s}\nlog: {level: debug, format: console}\nmetrics: {listen: \"127.0.0.1:19465\"}\n", false,
			[]string{"start-only keys changed: sip.keepalive_interval, media.port_range, media.timeout, log.format, metrics.listen; restart needed"}},
		{"live keys only", "media: {bind: 127.0.0.1, port_range: \"40000-40099\"}\nlog: {level: debug}\nlimits: {max_calls: 3}\n", true,
			[]string{"reload: configuration and certificates applied", `"log_level":"debug"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.write(t, tc.extra)
			var logs syncbuf.Buffer
			before := len(b2b.reloaded)
			got := reload(f.path, store, b2b, zerolog.New(&logs))
			if got != tc.applied {
				t.Fatalf("reload = %v, want %v\n%s", got, tc.applied, logs.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
			if applied := len(b2b.reloaded) > before; applied != tc.applied {
				t.Errorf("B2BUA reloaded: %v, want %v", applied, tc.applied)
			}
			if !tc.applied && strings.Contains(logs.String(), "applied") {
				t.Errorf("a refused reload logs \"applied\":\n%s", logs.String())
			}
		})
	}
	if b2b.conf.Limits.MaxCalls != 3 {
		t.Errorf("the live reload did not reach the B2BUA: max_calls %d", b2b.conf.Limits.MaxCalls)
	}
}

// notifySocket listens on a unixgram socket set as NOTIFY_SOCKET and
// returns the datagrams received.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// TestWatchdogPingsOnlyWhenAlive: WATCHDOG=1 reaches the systemd notify
// socket only while the liveness check passes; an outage is logged once.
func TestWatchdogPingsOnlyWhenAlive(t *testing.T) {
	got := notifySocket(t)
	var logs syncbuf.Buffer
	var down atomic.Bool
	wd := newWatchdog(zerolog.New(&logs), func() error {
		if down.Load() {
			return errors.New("media relay: watchdog goroutine stopped")
		}
		return nil
	})
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("notify socket got %q, want %q", m, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no %q on the notify socket", want)
		}
	}
	nothing := func() {
		t.Helper()
		select {
		case m := <-got:
			t.Fatalf("notify socket got %q while not alive", m)
		case <-time.After(200 * time.Millisecond):
		}
	}
	wd.ping()
	expect("WATCHDOG=1")
	down.Store(true)
	wd.ping()
	wd.ping()
	nothing()
	if n := strings.Count(logs.String(), "watchdog: not alive"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "media relay: watchdog goroutine stopped") {
		t.Errorf("the log does not say what is not alive:\n%s", logs.String())
	}
	down.Store(false)
	wd.ping()
	expect("WATCHDOG=1")
	if !strings.Contains(logs.String(), "alive again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestWatchedListener: a real listener with an accept loop like the SIP
// layer's (it ends on the first error) is alive while the loop waits in
// Accept, and not alive once the loop has ended.
func TestWatchedListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := watchListener(ln)
	defer w.Close()
	const grace = 100 * time.Millisecond
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		// Serves one connection, then "fails" as an accept loop hit by
		// EMFILE does: it returns and nobody accepts any more.
		c, err := w.Accept()
		if err == nil {
			_ = c.Close()
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	for w.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := w.alive(time.Now().Add(time.Hour), grace); err != nil {
		t.Fatalf("accept loop waiting, long after start: %v", err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	<-loopDone
	if err := w.alive(time.Now(), grace); err != nil {
		t.Fatalf("just after the last Accept returned (within grace): %v", err)
	}
	err = w.alive(time.Now().Add(2*grace), grace)
	if err == nil || !strings.Contains(err.Error(), "nothing accepts") {
		t.Fatalf("accept loop gone: alive = %v, want an error", err)
	}
	probe := liveness(probe{"sip listeners", func() error { return w.alive(time.Now().Add(2*grace), grace) }})
	if err := probe(); err == nil || !strings.Contains(err.Error(), "sip listeners: listener "+ln.Addr().String()) {
		t.Fatalf("liveness = %v", err)
	}
	_ = w.Close()
	if err := w.alive(time.Now(), grace); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("closed listener: alive = %v", err)
	}
}

type alivePart struct{ err error }

func (p alivePart) Alive() error { return p.err }

func TestAliveOf(t *testing.T) {
	boom := errors.New("relay stuck")
	if err := aliveOf(alivePart{boom})(); !errors.Is(err, boom) {
		t.Errorf("a part with Alive: %v, want its error", err)
	}
	if err := aliveOf(alivePart{})(); err != nil {
		t.Errorf("a live part: %v", err)
	}
	if err := aliveOf(struct{}{})(); err != nil {
		t.Errorf("a part without Alive counts as alive: %v", err)
	}
}

// TestDrainCallsSecondSignal: the drain waits for calls, ignores SIGHUP,
// and a second SIGTERM ends it at once, long before the drain timeout.
func TestDrainCallsSecondSignal(t *testing.T) {
	calls := newFakeB2BUA(2)
	sigs := make(chan os.Signal, 2)
	var logs syncbuf.Buffer
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		drainCalls(calls, time.Minute, sigs, nil, func() {}, zerolog.New(&logs))
		done <- time.Since(start)
	}()
	sigs <- syscall.SIGHUP
	select {
	case <-done:
		t.Fatal("drain ended on SIGHUP")
	case <-time.After(300 * time.Millisecond):
	}
	sigs <- syscall.SIGTERM
	select {
	case d := <-done:
		if d > 2*time.Second {
			t.Errorf("drain took %s after the second signal", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second SIGTERM did not end the drain")
	}
	for _, w := range []string{"reload ignored: shutting down", "second stop signal during drain", `"calls":2`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}

	// Calls that end by themselves end the drain too, as soon as the last
	// one ends (signalled, not polled).
	calls.setCalls(1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		calls.setCalls(0)
	}()
	start = time.Now()
	drainCalls(calls, time.Minute, make(chan os.Signal), nil, func() {}, zerolog.Nop())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("drain went on %s after the last call ended", d)
	}
}

// TestDrainCallsTimeout: calls still up when the drain timeout passes end
// the drain (the caller then ends them); the watchdog is pinged meanwhile.
func TestDrainCallsTimeout(t *testing.T) {
	calls := newFakeB2BUA(3)
	var logs syncbuf.Buffer
	tick := make(chan time.Time, 1)
	tick <- time.Now()
	pinged := 0
	start := time.Now()
	drainCalls(calls, 200*time.Millisecond, make(chan os.Signal), tick, func() { pinged++ }, zerolog.New(&logs))
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("drain of 200ms took %s", d)
	}
	if pinged != 1 {
		t.Errorf("watchdog pinged %d times during the drain, want 1", pinged)
	}
	if !strings.Contains(logs.String(), "drain timeout: ending the remaining calls with BYE") || !strings.Contains(logs.String(), `"calls":3`) {
		t.Errorf("log:\n%s", logs.String())
	}
}
