package sip

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// CDR is the call detail record of one call, written when it ends.
type CDR struct {
	Call        string         `json:"call"` // correlation id of all the call's log lines
	CallIDA     string         `json:"call_id_a"`
	CallIDB     string         `json:"call_id_b"`
	TrunkA      string         `json:"trunk_a"`
	TrunkB      string         `json:"trunk_b"`
	Start       time.Time      `json:"start"`
	Answer      *time.Time     `json:"answer,omitempty"`
	End         time.Time      `json:"end"`
	DurationSec float64        `json:"duration_s"`
	FinalCode   int            `json:"final_code"`
	HangupBy    string         `json:"hangup_by"` // a, b or sbc
	Reason      string         `json:"reason"`
	Media       map[string]any `json:"media,omitempty"`
	Transfers   int            `json:"transfers,omitempty"` // completed blind transfers (REFER)
}

// CDRSink receives CDRs. Write must not block for long and must not fail
// the call: errors are the sink's to report.
type CDRSink interface {
	Write(CDR)
}

// CDRFile appends CDRs as JSON lines. Each record is written with one
// write(2) as soon as the call ends, so it survives a crash of the
// process; fsync runs in batches every interval, bounding what a crash of
// the host can lose. Safe for concurrent use.
type CDRFile struct {
	log      zerolog.Logger
	interval time.Duration

	mu     sync.Mutex // guards f, dirty, failed
	f      *os.File
	dirty  bool
	failed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// OpenCDRFile opens (creating, 0640) path for appending and starts the
// batch fsync loop; Close stops it.
func OpenCDRFile(path string, interval time.Duration, log zerolog.Logger) (*CDRFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cdr file: %w", err)
	}
	if interval <= 0 {
		interval = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &CDRFile{log: log, interval: interval, f: f, cancel: cancel, done: make(chan struct{})}
	go c.syncLoop(ctx)
	return c, nil
}

// Write appends one record. A write error is logged once and never stops
// calls.
func (c *CDRFile) Write(r CDR) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	b = append(b, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return
	}
	if _, err := c.f.Write(b); err != nil {
		if !c.failed {
			c.log.Error().Err(err).Msg("CDR file write failed; CDRs stay in the log")
			c.failed = true
		}
		return
	}
	c.failed = false
	c.dirty = true
}

func (c *CDRFile) syncLoop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sync()
		}
	}
}

func (c *CDRFile) sync() {
	c.mu.Lock()
	f, dirty := c.f, c.dirty
	c.dirty = false
	c.mu.Unlock()
	if f != nil && dirty {
		if err := f.Sync(); err != nil {
			c.log.Warn().Err(err).Msg("CDR file fsync failed")
		}
	}
}

// Close flushes and closes the file; it is idempotent.
func (c *CDRFile) Close() error {
	c.cancel()
	<-c.done
	c.sync()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
