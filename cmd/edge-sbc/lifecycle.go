package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// subscribeSignals routes SIGHUP, SIGTERM, SIGINT and SIGUSR1 (take the
// cluster's calls over, cluster.go) to the returned
// channel. cmdRun calls it before anything else: until it is called, Go's
// default action for these signals ends the process, so a SIGHUP sent while
// the SBC starts (systemctl reload during a slow start) would kill it. A
// signal that arrives during start-up waits in the channel and is handled
// once the SBC has started. stop undoes the subscription.
func subscribeSignals() (sigs <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	return ch, func() { signal.Stop(ch) }
}

// every calls tick on its own goroutine each period (a time.Ticker's
// ticks) until stop, which ends the goroutine and waits for it: the
// background watches of the service (idle memory release, processor
// governor, service address) run on it.
func every(period time.Duration, tick func(now time.Time)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				tick(now)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// isStop reports whether s asks the SBC to stop (SIGTERM, SIGINT).
func isStop(s os.Signal) bool {
	return s == syscall.SIGTERM || s == syscall.SIGINT
}

// isTakeover reports whether s asks the SBC to take the cluster's calls
// over (SIGUSR1: keepalived's notify_master).
func isTakeover(s os.Signal) bool { return s == syscall.SIGUSR1 }

// idleWaiter is what the drain waits on (*sip.B2BUA).
type idleWaiter interface {
	ActiveCalls() int
	// WaitIdle returns nil when the last call has ended, or ctx's error.
	WaitIdle(ctx context.Context) error
}

// drainCalls waits, once new calls are refused, until no call is left, the
// drain timeout passes, or a second SIGTERM/SIGINT arrives (an operator who
// does not want to wait); the caller then ends the remaining calls with BYE
// and writes their CDRs. A SIGHUP during the drain is ignored (logged).
// While it waits, tick (the systemd watchdog ticker, nil without one)
// still pings through ping. The end of the last call is signalled by
// WaitIdle, not polled; its goroutine ends before drainCalls returns.
func drainCalls(calls idleWaiter, drain time.Duration, sigs <-chan os.Signal, tick <-chan time.Time, ping func(), log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	idle := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { idle <- calls.WaitIdle(ctx) })
	defer wg.Wait()
	defer cancel()
	for {
		select {
		case err := <-idle:
			if err != nil {
				log.Info().Int("calls", calls.ActiveCalls()).Msg("drain timeout: ending the remaining calls with BYE")
			}
			return
		case s := <-sigs:
			if !isStop(s) {
				log.Warn().Str("signal", s.String()).Msg("reload ignored: shutting down")
				continue
			}
			log.Warn().Str("signal", s.String()).Int("calls", calls.ActiveCalls()).
				Msg("second stop signal during drain: ending the remaining calls with BYE now")
			return
		case <-tick:
			ping()
		}
	}
}

// closers is the stack of what start opened. close runs them newest first,
// each once, and logs (never stops on) a failure; after close the stack is
// empty. It is used by one goroutine (the main one).
type closers struct {
	fns []namedCloser
}

type namedCloser struct {
	name  string
	close func() error
}

// push adds what closes one part that has just been opened or started.
func (c *closers) push(name string, close func() error) {
	c.fns = append(c.fns, namedCloser{name, close})
}

// close closes every part, newest first, and returns the failures joined.
// A part already closed by one closed after it (the B2BUA closes its
// listeners) is not a failure.
func (c *closers) close(log zerolog.Logger) error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		f := c.fns[i]
		if err := f.close(); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error().Err(err).Str("part", f.name).Msg("close failed")
			errs = append(errs, fmt.Errorf("close %s: %w", f.name, err))
		}
	}
	c.fns = nil
	return errors.Join(errs...)
}

// aliver is a part that can tell whether it still works: the systemd
// watchdog is pinged only while every part is alive.
type aliver interface {
	Alive() error
}

// aliveOf returns part's own Alive when it has one and otherwise a probe
// that always reports alive. (*sip.B2BUA).Alive and (*media.Engine).Alive
// are asked of the sip and media packages (NOTES-h3.md); with aliveOf they
// are used as soon as they exist, with no change here.
func aliveOf(part any) func() error {
	if a, ok := part.(aliver); ok {
		return a.Alive
	}
	return func() error { return nil }
}

// probe is one named liveness check.
type probe struct {
	name  string
	alive func() error
}

// liveness returns a check that is nil only when every probe is.
func liveness(probes ...probe) func() error {
	return func() error {
		var errs []error
		for _, p := range probes {
			if err := p.alive(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			}
		}
		return errors.Join(errs...)
	}
}

// watchdog pings systemd (WATCHDOG=1) only when its liveness check passes,
// so that systemd restarts an SBC whose SIP accept loop or media relay has
// died even though its main loop still runs.
type watchdog struct {
	log   zerolog.Logger
	alive func() error
	send  func(state string)
	down  bool // the last check failed (logged once per outage)
}

func newWatchdog(log zerolog.Logger, alive func() error) *watchdog {
	return &watchdog{log: log, alive: alive, send: func(state string) { notify(log, state) }}
}

// ping checks liveness and pings systemd when alive.
func (w *watchdog) ping() {
	if err := w.alive(); err != nil {
		if !w.down {
			w.log.Error().Err(err).Msg("watchdog: not alive; systemd is no longer pinged and restarts edge-sbc after WatchdogSec")
		}
		w.down = true
		return
	}
	if w.down {
		w.log.Info().Msg("watchdog: alive again; pinging systemd")
		w.down = false
	}
	w.send(daemon.SdNotifyWatchdog)
}

// watchedListener records whether somebody still accepts on a listener
// and whether accepting works: the SIP layer retries a failing Accept
// (EMFILE, say) with a backoff, and while every attempt fails the kernel
// keeps completing TCP handshakes that nobody takes.
type watchedListener struct {
	net.Listener
	waiting atomic.Int32 // Accept calls in progress
	last    atomic.Int64 // UnixNano of the last successful Accept return (or of creation)
	failing atomic.Bool  // the last Accept returned an error
	closed  atomic.Bool
}

func watchListener(ln net.Listener) *watchedListener {
	w := &watchedListener{Listener: ln}
	w.last.Store(time.Now().UnixNano())
	return w
}

func (l *watchedListener) Accept() (net.Conn, error) {
	l.waiting.Add(1)
	c, err := l.Listener.Accept()
	l.waiting.Add(-1)
	l.failing.Store(err != nil)
	if err == nil {
		l.last.Store(time.Now().UnixNano())
	}
	return c, err
}

func (l *watchedListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

// alive is nil while an Accept call is waiting (and the last one did not
// fail) or one returned a connection within grace of now (the accept loop
// may be between two calls).
func (l *watchedListener) alive(now time.Time, grace time.Duration) error {
	switch {
	case l.closed.Load():
		return fmt.Errorf("listener %s is closed", l.Addr())
	case l.failing.Load() && now.Sub(time.Unix(0, l.last.Load())) > grace:
		return fmt.Errorf("listener %s: accepting connections fails", l.Addr())
	case l.waiting.Load() > 0:
		return nil
	case now.Sub(time.Unix(0, l.last.Load())) <= grace:
		return nil
	default:
		return fmt.Errorf("listener %s: nothing accepts connections any more", l.Addr())
	}
}

// listenersAlive is the probe of the SIP listeners; grace is the watchdog
// ping interval.
func listenersAlive(lns []*watchedListener, grace time.Duration) func() error {
	return func() error {
		now := time.Now()
		var errs []error
		for _, l := range lns {
			if err := l.alive(now, grace); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}
