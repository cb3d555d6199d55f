package hep

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of ExporterConfig.
const (
	DefaultQueueLen     = 4096
	DefaultQueueBytes   = 16 << 20
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 2 * time.Second
	DefaultMinBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultLogEvery     = time.Minute
	// closeFlush bounds how long Close sends what is still queued.
	closeFlush = time.Second
	// maxDatagram is the largest UDP payload over IPv4.
	maxDatagram = 65507
)

// ExporterConfig configures an Exporter. Zero durations and sizes take the
// defaults above.
type ExporterConfig struct {
	// Addr is the collector's host:port (a name is resolved at each
	// connection attempt).
	Addr string
	// Transport is "udp" or "tcp".
	Transport string
	// NodeID and Password are put in every packet (Password only when
	// set). The password is never logged.
	NodeID   uint32
	Password string
	// QueueLen and QueueBytes bound the packets waiting to be sent; a
	// packet that does not fit is dropped (Stats.QueueFull).
	QueueLen   int
	QueueBytes int
	// DialTimeout bounds a TCP connect; WriteTimeout one write.
	DialTimeout  time.Duration
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts (doubling after each failure).
	MinBackoff, MaxBackoff time.Duration
	// LogEvery is the least time between two "collector unreachable" logs.
	LogEvery time.Duration
	Log      zerolog.Logger
}

func (c ExporterConfig) withDefaults() ExporterConfig {
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.LogEvery, DefaultLogEvery)
	return c
}

// Stats counts what an Exporter did with the packets given to Send.
type Stats struct {
	Sent      uint64 // written to the collector
	QueueFull uint64 // dropped: the queue was full (collector slow or down)
	TooLarge  uint64 // dropped: larger than a HEP packet (or a datagram) can be
	SendError uint64 // dropped: the write failed, or still queued at Close
}

// Dropped is the sum of the drop counters.
func (s Stats) Dropped() uint64 { return s.QueueFull + s.TooLarge + s.SendError }

// Exporter sends HEP packets to one collector from a goroutine it owns
// until Close. Send never blocks.
type Exporter struct {
	cfg    ExporterConfig
	q      chan []byte
	qbytes atomic.Int64
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	sent, queueFull, tooLarge, sendError atomic.Uint64

	// Only the sending goroutine uses these.
	lastLog    time.Time
	downLogged bool
}

// NewExporter checks cfg and starts the sending goroutine. It does not wait
// for the collector: a collector that is down only makes packets drop.
func NewExporter(cfg ExporterConfig) (*Exporter, error) {
	switch cfg.Transport {
	case "udp", "tcp":
	default:
		return nil, fmt.Errorf("hep: transport %q: must be udp or tcp", cfg.Transport)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("hep: collector %q: %w", cfg.Addr, err)
	}
	cfg = cfg.withDefaults()
	e := &Exporter{cfg: cfg, q: make(chan []byte, cfg.QueueLen), done: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	go e.run()
	return e, nil
}

// Send encodes p (with the exporter's node id and password) and queues it.
// It copies what it needs of p (p.Payload may be reused as soon as Send
// returns) and never blocks: when the queue is full the packet is dropped
// and counted.
func (e *Exporter) Send(p Packet) {
	if e.ctx.Err() != nil {
		return
	}
	p.NodeID, p.Password = e.cfg.NodeID, e.cfg.Password
	size := p.Size()
	if size > MaxPacket || e.cfg.Transport == "udp" && size > maxDatagram {
		e.tooLarge.Add(1)
		return
	}
	if e.qbytes.Add(int64(size)) > int64(e.cfg.QueueBytes) {
		e.qbytes.Add(-int64(size))
		e.queueFull.Add(1)
		return
	}
	b, err := AppendPacket(make([]byte, 0, size), &p)
	if err != nil {
		e.qbytes.Add(-int64(size))
		e.sendError.Add(1)
		return
	}
	select {
	case e.q <- b:
	default:
		e.qbytes.Add(-int64(size))
		e.queueFull.Add(1)
	}
}

// Stats returns the counters so far.
func (e *Exporter) Stats() Stats {
	return Stats{Sent: e.sent.Load(), QueueFull: e.queueFull.Load(), TooLarge: e.tooLarge.Load(), SendError: e.sendError.Load()}
}

// Close stops the exporter: what is queued is sent for at most a second,
// then the connection is closed. It waits for the sending goroutine and may
// be called more than once.
func (e *Exporter) Close() error {
	e.once.Do(e.cancel)
	<-e.done
	return nil
}

func (e *Exporter) run() {
	defer close(e.done)
	var conn net.Conn
	defer func() {
		if conn != nil {
			e.flush(conn)
			_ = conn.Close()
		}
		e.sendError.Add(uint64(len(e.q)))
	}()
	backoff := e.cfg.MinBackoff
	for {
		if conn == nil {
			c, err := e.dial()
			if err != nil {
				if e.ctx.Err() != nil {
					return
				}
				e.down(err)
				if !e.sleep(backoff) {
					return
				}
				backoff = min(2*backoff, e.cfg.MaxBackoff)
				continue
			}
			conn, backoff = c, e.cfg.MinBackoff
			if e.cfg.Transport == "tcp" {
				e.up()
			}
		}
		select {
		case <-e.ctx.Done():
			return
		case b := <-e.q:
			e.qbytes.Add(-int64(len(b)))
			if err := e.write(conn, b, time.Now().Add(e.cfg.WriteTimeout)); err != nil {
				e.sendError.Add(1)
				e.down(err)
				if e.cfg.Transport == "tcp" {
					// A partial write breaks the stream's framing.
					_ = conn.Close()
					conn = nil
				}
				continue
			}
			e.sent.Add(1)
			e.up()
		}
	}
}

func (e *Exporter) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: e.cfg.DialTimeout}
	c, err := d.DialContext(e.ctx, e.cfg.Transport, e.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("hep: connect %s/%s: %w", e.cfg.Transport, e.cfg.Addr, err)
	}
	return c, nil
}

func (e *Exporter) write(conn net.Conn, b []byte, deadline time.Time) error {
	_ = conn.SetWriteDeadline(deadline)
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("hep: send to %s/%s: %w", e.cfg.Transport, e.cfg.Addr, err)
	}
	return nil
}

// flush sends what is queued, for at most closeFlush.
func (e *Exporter) flush(conn net.Conn) {
	deadline := time.Now().Add(closeFlush)
	for time.Now().Before(deadline) {
		select {
		case b := <-e.q:
			e.qbytes.Add(-int64(len(b)))
			if err := e.write(conn, b, deadline); err != nil {
				e.sendError.Add(1)
				return
			}
			e.sent.Add(1)
		default:
			return
		}
	}
}

// sleep waits d unless the exporter is closed first (false).
func (e *Exporter) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.ctx.Done():
		return false
	}
}

// down logs a collector failure, at most once per LogEvery.
func (e *Exporter) down(err error) {
	now := time.Now()
	if !e.lastLog.IsZero() && now.Sub(e.lastLog) < e.cfg.LogEvery {
		return
	}
	e.lastLog, e.downLogged = now, true
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	st := e.Stats()
	e.cfg.Log.Warn().Err(err).Str("collector", e.cfg.Addr).Str("transport", e.cfg.Transport).Bool("timeout", timeout).
		Uint64("dropped", st.Dropped()).Uint64("sent", st.Sent).
		Msgf("HEP collector unreachable: SIP messages are queued, then dropped (this is logged at most once per %s)", e.cfg.LogEvery)
}

// up logs that the collector is reached again after a logged failure.
func (e *Exporter) up() {
	if !e.downLogged {
		return
	}
	e.downLogged = false
	st := e.Stats()
	e.cfg.Log.Info().Str("collector", e.cfg.Addr).Str("transport", e.cfg.Transport).Uint64("dropped", st.Dropped()).
		Msg("HEP collector reached again")
}
