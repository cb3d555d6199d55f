package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrSealed is wrapped by Load's error when some values did not open: not
// sealed with this node's state key (cluster.state_key_file differs
// between the nodes), or altered.
var ErrSealed = errors.New("cluster: call state that does not open with this state key")

// MaxStateSize bounds one call's state.
const MaxStateSize = 1 << 20

// StateStore keeps the state of this service's calls in Redis, sealed, for
// a node that takes them over. The state is the B2BUA's: opaque bytes
// here. Get it from Cluster.StateStore.
type StateStore struct {
	c       *Cluster
	mu      sync.Mutex
	seq     uint64
	entries map[string]*stateEntry // this node's last write of each call
	deletes map[string]uint64      // deletes that did not reach Redis, by seq
}

// stateEntry is a call's last sealed state, kept until Delete or expiry so
// that it can be written again when Redis lost it or missed the write.
type stateEntry struct {
	value   []byte
	expires time.Time
	seq     uint64
	dirty   bool
}

// pendingPut is one state the rewrite writes.
type pendingPut struct {
	id    string
	value []byte
	ttl   time.Duration
	seq   uint64
}

// Put writes callID's state with a TTL (the caller's: the session expiry
// plus a grace), replacing the previous one, and tells the watchers: one
// EVALSHA. The value is sealed first (AES-256-GCM, a new random nonce,
// this node's id and the call id as additional data). The sealed value is
// also kept here until Delete or the TTL: when Redis cannot be used (the
// error then wraps ErrUnavailable, for information) or loses it, it is
// written again when Redis is back.
func (s *StateStore) Put(ctx context.Context, callID string, state []byte, ttl time.Duration) error {
	if err := checkCallID(callID); err != nil {
		return err
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("cluster: put %s: ttl %s: must be at least 1ms", callID, ttl)
	}
	if len(state) > MaxStateSize {
		return fmt.Errorf("cluster: put %s: %d bytes of state (at most %d)", callID, len(state), MaxStateSize)
	}
	c := s.c
	value, err := c.seal(callID, state)
	if err != nil {
		return err
	}
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.entries[callID] = &stateEntry{value: value, expires: time.Now().Add(ttl), seq: seq, dirty: true}
	delete(s.deletes, callID)
	s.mu.Unlock()
	if err := c.gate(); err != nil {
		c.dirty.Store(true)
		return err
	}
	octx, cancel := c.opContext(ctx)
	err = c.sc.put.Run(octx, c.rdb, []string{c.k.state(callID)}, value, ttl.Milliseconds(), c.k.channel(), putNotice(callID)).Err()
	cancel()
	if err != nil {
		c.dirty.Store(true)
		return c.failed(ctx, err)
	}
	s.mu.Lock()
	if e := s.entries[callID]; e != nil && e.seq == seq {
		e.dirty = false
	}
	s.mu.Unlock()
	return nil
}

// Delete removes callID's state (the call ended) and tells the watchers:
// one EVALSHA. Deleting a state that is not there is harmless. An error
// wrapping ErrUnavailable needs nothing from the caller: the delete is
// done when Redis is back.
func (s *StateStore) Delete(ctx context.Context, callID string) error {
	if err := checkCallID(callID); err != nil {
		return err
	}
	c := s.c
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	s.mu.Lock()
	s.seq++
	seq := s.seq
	delete(s.entries, callID)
	s.deletes[callID] = seq
	s.mu.Unlock()
	if err := c.gate(); err != nil {
		c.dirty.Store(true)
		return err
	}
	octx, cancel := c.opContext(ctx)
	err := c.sc.del.Run(octx, c.rdb, []string{c.k.state(callID)}, c.k.channel(), deleteNotice(callID, c.o.NodeID)).Err()
	cancel()
	if err != nil {
		c.dirty.Store(true)
		return c.failed(ctx, err)
	}
	s.mu.Lock()
	if s.deletes[callID] == seq {
		delete(s.deletes, callID)
	}
	s.mu.Unlock()
	return nil
}

// Load returns the state of every call of the service in Redis (written
// by any node, this one included), opened: what a node taking over the
// service address carries on. It scans the state keys (SCAN and MGET in
// batches of 256; ctx bounds the whole, Options.Timeout each command).
// Values that do not open are left out and counted in an error wrapping
// ErrSealed, returned with the calls that did open.
func (s *StateStore) Load(ctx context.Context) (map[string][]byte, error) {
	if err := s.c.gate(); err != nil {
		return nil, err
	}
	all, bad, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(all))
	for id, o := range all {
		out[id] = o.state
	}
	if bad > 0 {
		return out, fmt.Errorf("%w: %d of %d", ErrSealed, bad, bad+len(all))
	}
	return out, nil
}

// opened is one call's state with its writer.
type opened struct {
	state []byte
	node  string
}

// load scans and opens every state.
func (s *StateStore) load(ctx context.Context) (map[string]opened, int, error) {
	c := s.c
	out := map[string]opened{}
	bad := 0
	prefix := c.k.state("")
	var cursor uint64
	for {
		keys, next, err := c.rdb.Scan(ctx, cursor, c.k.statePattern(), 256).Result()
		if err != nil {
			return nil, 0, c.failed(ctx, fmt.Errorf("scan: %w", err))
		}
		if len(keys) > 0 {
			vals, err := c.rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return nil, 0, c.failed(ctx, fmt.Errorf("mget: %w", err))
			}
			for i, v := range vals {
				str, ok := v.(string)
				if !ok {
					continue // expired between SCAN and MGET
				}
				id := strings.TrimPrefix(keys[i], prefix)
				node, state, err := c.open(id, []byte(str))
				if err != nil {
					bad++
					continue
				}
				out[id] = opened{state, node}
			}
		}
		if cursor = next; cursor == 0 {
			return out, bad, nil
		}
	}
}

// Watch keeps the caller's warm copy of the calls other nodes write: fn
// is called with each state another node puts (deleted false) and each
// call another node deletes (state nil, deleted true), in order, from
// Watch's goroutine; fn must not block long nor call Close. On each
// (re)subscription to the notices, Watch first reads every state (as
// Load) and calls fn for each call of another node, and with deleted true
// for each call it had reported that is gone: after a broken connection
// the copy is whole again. Expiry is not reported: a call whose state
// expired was not renewed by its node, and Load at takeover leaves it out.
//
// Watch returns when ctx is done (ctx.Err()) or the Cluster is closed
// (ErrClosed); it retries Redis on its own until then.
func (s *StateStore) Watch(ctx context.Context, fn func(callID string, state []byte, deleted bool)) error {
	c := s.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	known := map[string]bool{}
	warned := false
	backoff := 100 * time.Millisecond
	for {
		ps := c.rdb.Subscribe(ctx, c.k.channel())
		done := make(chan struct{})
		var closer sync.WaitGroup
		closer.Add(1)
		go func() { // closes the subscription to end a blocked receive
			defer closer.Done()
			select {
			case <-ctx.Done():
			case <-c.ctx.Done():
			case <-done:
			}
			_ = ps.Close()
		}()
		synced, err := s.watchOnce(ctx, ps, known, &warned, fn)
		close(done)
		closer.Wait()
		switch {
		case c.ctx.Err() != nil:
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if synced {
			backoff = 100 * time.Millisecond
		}
		c.log.Debug().Err(err).Dur("retry_in", backoff).Msg("cluster: state watch interrupted")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// watchPing is how long a quiet subscription waits before it pings
// Redis; a ping unanswered for as long again ends the subscription.
const watchPing = 5 * time.Second

// watchOnce serves one subscription until it fails; synced says whether it
// got as far as reading the states.
func (s *StateStore) watchOnce(ctx context.Context, ps *redis.PubSub, known map[string]bool, warned *bool,
	fn func(string, []byte, bool)) (synced bool, err error) {
	c := s.c
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchPing)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if err := ps.Ping(ctx); err != nil {
					return synced, fmt.Errorf("ping: %w", err)
				}
				continue
			}
			return synced, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			all, bad, err := s.load(ctx)
			if err != nil {
				return synced, err
			}
			synced = true
			if bad > 0 && !*warned {
				*warned = true
				c.log.Warn().Int("calls", bad).Msg("cluster: call states that do not open with this state key (is cluster.state_key_file the same on every node?)")
			}
			for id, o := range all {
				if o.node == c.o.NodeID {
					continue
				}
				known[id] = true
				fn(id, o.state, false)
			}
			for id := range known {
				if o, ok := all[id]; !ok || o.node == c.o.NodeID {
					delete(known, id)
					fn(id, nil, true)
				}
			}
		case *redis.Message:
			s.notice([]byte(m.Payload), known, warned, fn)
		}
	}
}

// notice delivers one put or delete notice of another node.
func (s *StateStore) notice(b []byte, known map[string]bool, warned *bool, fn func(string, []byte, bool)) {
	c := s.c
	if len(b) < 3 {
		return
	}
	op, n := b[0], int(binary.BigEndian.Uint16(b[1:3]))
	b = b[3:]
	if len(b) < n {
		return
	}
	id, rest := string(b[:n]), b[n:]
	switch op {
	case 'P':
		node, state, err := c.open(id, rest)
		if err != nil {
			if !*warned {
				*warned = true
				c.log.Warn().Str("call", id).Msg("cluster: a call state does not open with this state key (is cluster.state_key_file the same on every node?)")
			}
			return
		}
		if node == c.o.NodeID {
			return
		}
		known[id] = true
		fn(id, state, false)
	case 'D':
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) || string(rest[1:1+int(rest[0])]) == c.o.NodeID {
			return
		}
		delete(known, id)
		fn(id, nil, true)
	}
}

// expire forgets the kept states whose TTL passed.
func (s *StateStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, id)
		}
	}
}

// pending lists what the rewrite writes: the states that did not reach
// Redis (every kept state when all) and the deletes that did not.
func (s *StateStore) pending(all bool, now time.Time) ([]pendingPut, map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var puts []pendingPut
	for id, e := range s.entries {
		ttl := e.expires.Sub(now)
		if ttl < time.Millisecond {
			delete(s.entries, id)
			continue
		}
		if all || e.dirty {
			puts = append(puts, pendingPut{id: id, value: e.value, ttl: ttl, seq: e.seq})
		}
	}
	dels := make(map[string]uint64, len(s.deletes))
	for id, seq := range s.deletes {
		dels[id] = seq
	}
	return puts, dels
}

// written marks what the rewrite wrote, unless it changed meanwhile; the
// states another node wrote since (taken) are forgotten here.
func (s *StateStore) written(puts []pendingPut, dels map[string]uint64, taken map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range puts {
		if e := s.entries[p.id]; e != nil && e.seq == p.seq {
			e.dirty = false
			if taken[p.id] {
				delete(s.entries, p.id)
			}
		}
	}
	for id, seq := range dels {
		if s.deletes[id] == seq {
			delete(s.deletes, id)
		}
	}
}

// Sealed values: version 1, the writer's node id (length-prefixed), the
// 12-byte nonce, then the AES-256-GCM ciphertext and tag. The additional
// data binds the writer and the call id.
const sealVersion = 1

func (c *Cluster) seal(callID string, state []byte) ([]byte, error) {
	node := c.o.NodeID
	ns := c.aead.NonceSize()
	out := make([]byte, 0, 2+len(node)+ns+len(state)+c.aead.Overhead())
	out = append(out, sealVersion, byte(len(node)))
	out = append(out, node...)
	nonce := out[len(out) : len(out)+ns]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("cluster: nonce: %w", err)
	}
	out = out[:len(out)+ns]
	return c.aead.Seal(out, nonce, state, sealAD(node, callID)), nil
}

func (c *Cluster) open(callID string, v []byte) (node string, state []byte, err error) {
	ns := c.aead.NonceSize()
	if len(v) < 2 || v[0] != sealVersion || len(v) < 2+int(v[1])+ns+c.aead.Overhead() {
		return "", nil, ErrSealed
	}
	n := int(v[1])
	node = string(v[2 : 2+n])
	nonce := v[2+n : 2+n+ns]
	state, err = c.aead.Open(nil, nonce, v[2+n+ns:], sealAD(node, callID))
	if err != nil {
		return "", nil, ErrSealed
	}
	return node, state, nil
}

func sealAD(node, callID string) []byte {
	ad := make([]byte, 0, 32+len(node)+len(callID))
	ad = append(ad, "edge-sbc cluster state v1\x00"...)
	ad = append(ad, byte(len(node)))
	ad = append(ad, node...)
	return append(ad, callID...)
}

// Notices on the channel: 'P', the call id (uint16 length), then the
// sealed value; 'D', the call id, then the deleting node's id (one-byte
// length).
func putNotice(callID string) []byte {
	b := make([]byte, 0, 3+len(callID))
	b = append(b, 'P')
	b = binary.BigEndian.AppendUint16(b, uint16(len(callID)))
	return append(b, callID...)
}

func deleteNotice(callID, node string) []byte {
	b := make([]byte, 0, 4+len(callID)+len(node))
	b = append(b, 'D')
	b = binary.BigEndian.AppendUint16(b, uint16(len(callID)))
	b = append(b, callID...)
	b = append(b, byte(len(node)))
	return append(b, node...)
}

func checkCallID(id string) error {
	if id == "" {
		return errors.New("cluster: empty call id")
	}
	if len(id) > MaxCallIDLen {
		return fmt.Errorf("cluster: call id of %d bytes (at most %d)", len(id), MaxCallIDLen)
	}
	return nil
}
