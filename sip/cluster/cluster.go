package cluster

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"
)

// Errors of the package. An error that wraps ErrUnavailable means Redis
// could not be used: apply local limits; nothing needs undoing.
var (
	ErrUnavailable = errors.New("cluster: Redis unavailable")
	ErrClosed      = errors.New("cluster: closed")
)

// Cluster is this node's membership of the service: the Redis client, the
// heartbeat and the watchers. Its Admitter and StateStore are the two
// things the B2BUA uses. All methods are safe for concurrent use.
type Cluster struct {
	o      Options // Key cleared
	rdb    *redis.Client
	k      keyspace
	sc     scripts
	aead   cipher.AEAD
	log    zerolog.Logger
	epoch  string // this run's random id, the value of the alive key
	adm    *Admitter
	states *StateStore

	// syncMu: operations that write this node's records hold it shared;
	// the rewrite of the records holds it alone.
	syncMu sync.RWMutex
	up     atomic.Bool // the last operation or heartbeat reached Redis
	left   atomic.Bool // Leave: nothing more is written
	beatMu sync.Mutex  // held by beat and Leave: no heartbeat after Leave
	ready  atomic.Bool // up and the node's records are in Redis: operations may use it
	dirty  atomic.Bool // something did not reach Redis: rewrite the records
	kick   chan struct{}

	hmu        sync.Mutex // the logged transitions
	downLogged bool
	everUp     bool
	beats      int
	dupLogged  bool

	mu      sync.Mutex
	started bool
	closed  bool
	ctx     context.Context // done at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the heartbeat and every Watch
}

// Open builds the Cluster of o. It does no I/O: Start does. The key in o
// is copied into the cipher and not kept.
func Open(o Options) (*Cluster, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(o.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster: state key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cluster: state key: %w", err)
	}
	o.Key = nil
	var e [12]byte
	if _, err := rand.Read(e[:]); err != nil {
		return nil, fmt.Errorf("cluster: epoch: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		o: o, rdb: newClient(o), k: keyspace{o.Prefix}, sc: newScripts(), aead: aead,
		log:   o.Log.With().Str("component", "cluster").Str("node", o.NodeID).Logger(),
		epoch: hex.EncodeToString(e[:]), kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}
	c.adm = &Admitter{c: c, calls: map[string][]string{}}
	c.states = &StateStore{c: c, entries: map[string]*stateEntry{}, deletes: map[string]uint64{}}
	return c, nil
}

// newClient makes the go-redis client: no retries, every step bounded by
// the timeout, no client-side features that talk to the server on their own.
func newClient(o Options) *redis.Client {
	r := o.Redis
	if r.SentinelMaster != "" {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: r.SentinelMaster, SentinelAddrs: r.Addrs,
			Username: r.Username, Password: r.Password, DB: r.DB, TLSConfig: r.TLS,
			Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, DialerRetries: 1,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout, PoolTimeout: o.Timeout,
			ContextTimeoutEnabled: true,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:     r.Addrs[0],
		Username: r.Username, Password: r.Password, DB: r.DB, TLSConfig: r.TLS,
		Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialerRetries: 1,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout, PoolTimeout: o.Timeout,
		ContextTimeoutEnabled:    true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// Admitter is the cluster-wide admission of this node.
func (c *Cluster) Admitter() *Admitter { return c.adm }

// StateStore is the replicated call state of the service.
func (c *Cluster) StateStore() *StateStore { return c.states }

// NodeID is this node's id.
func (c *Cluster) NodeID() string { return c.o.NodeID }

// Up reports whether Redis answered the last heartbeat or operation: the
// edge_sbc_cluster_redis_up gauge. False before Start.
func (c *Cluster) Up() bool { return c.up.Load() }

// Start sends the first heartbeat (writing this node's records, which
// replaces those a previous run of the same node id left) and starts the
// heartbeat goroutine. It returns nil when Redis is unreachable too: the
// node then runs on local limits (Up is false) until Redis answers. ctx
// bounds the first heartbeat only.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("cluster: already started")
	}
	c.started = true
	c.wg.Add(1)
	c.mu.Unlock()
	c.beat(ctx)
	go c.run()
	return nil
}

// Close stops the heartbeat and every Watch, waits for them, and closes
// the Redis client. It releases nothing: this node's calls stop counting
// when its alive key expires (HeartbeatTTL), as if it had been killed;
// release calls before (the drain does). Close must not be called from a
// Watch callback.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if err := c.rdb.Close(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// run is the heartbeat goroutine.
func (c *Cluster) run() {
	defer c.wg.Done()
	t := time.NewTimer(c.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.beat(c.ctx)
		next := c.o.HeartbeatInterval
		if !c.ready.Load() {
			next = c.o.ProbeInterval
		}
		t.Reset(next)
	}
}

// beat refreshes the alive key, and rewrites this node's records when
// Redis lost them or something did not reach it.
func (c *Cluster) beat(ctx context.Context) {
	c.beatMu.Lock()
	defer c.beatMu.Unlock()
	if c.left.Load() {
		return
	}
	c.states.expire(time.Now())
	octx, cancel := c.opContext(ctx)
	prev, err := c.sc.heartbeat.Run(octx, c.rdb, nil, c.o.Prefix, c.o.NodeID, c.epoch,
		c.o.HeartbeatTTL.Milliseconds(), c.o.StaleAfter.Milliseconds()).Text()
	cancel()
	if err != nil {
		c.down(ctx, err)
		return
	}
	c.hmu.Lock()
	c.beats++
	first := c.beats == 1
	c.hmu.Unlock()
	lost := prev != c.epoch
	if lost && prev != "" && !first {
		c.hmu.Lock()
		if !c.dupLogged {
			c.dupLogged = true
			c.log.Error().Msg("cluster: another process wrote this node's heartbeat: is cluster.node_id the same on two nodes?")
		}
		c.hmu.Unlock()
	}
	if lost || c.dirty.Load() || !c.ready.Load() {
		c.ready.Store(false)
		if err := c.resync(ctx, lost, first); err != nil {
			c.down(ctx, err)
			return
		}
	}
	c.isUp()
}

// resync rewrites this node's admission records from memory, and the call
// states that did not reach Redis (all of them when Redis lost them). The
// first one (at Start) replaces what an earlier run left, quietly.
func (c *Cluster) resync(ctx context.Context, all, first bool) error {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	c.dirty.Store(false)
	calls := c.adm.snapshot()
	puts, dels := c.states.pending(all, time.Now())
	n := c.o.NodeID
	pipe := c.rdb.TxPipeline()
	pipe.Del(ctx, c.k.calls(n), c.k.count(n))
	count := map[string]int{"*": len(calls)}
	fields := make([]any, 0, 2*len(calls))
	for id, fs := range calls {
		for _, f := range fs {
			count[f]++
		}
		fields = append(fields, id, encodeFields(fs))
	}
	cf := []any{"_epoch", c.epoch}
	for f, v := range count {
		cf = append(cf, f, v)
	}
	pipe.HSet(ctx, c.k.count(n), cf...)
	if len(fields) > 0 {
		pipe.HSet(ctx, c.k.calls(n), fields...)
	}
	pipe.PExpire(ctx, c.k.calls(n), c.o.StaleAfter)
	pipe.PExpire(ctx, c.k.count(n), c.o.StaleAfter)
	pipe.SAdd(ctx, c.k.nodes(), n)
	pipe.Set(ctx, c.k.alive(n), c.epoch, c.o.HeartbeatTTL)
	// A state (or delete) is written again only if the call's state in
	// Redis is absent or this node's: another node's means it took the
	// call over. The script is loaded first: Redis may have restarted.
	var rw []*redis.Cmd
	if len(puts)+len(dels) > 0 {
		if err := c.sc.rewrite.Load(ctx, c.rdb).Err(); err != nil {
			c.dirty.Store(true)
			return fmt.Errorf("loading the rewrite script: %w", err)
		}
	}
	for _, p := range puts {
		rw = append(rw, c.sc.rewrite.EvalSha(ctx, pipe, []string{c.k.state(p.id)},
			p.value, p.ttl.Milliseconds(), c.k.channel(), putNotice(p.id), n, "0"))
	}
	delIDs := make([]string, 0, len(dels))
	for id := range dels {
		delIDs = append(delIDs, id)
		rw = append(rw, c.sc.rewrite.EvalSha(ctx, pipe, []string{c.k.state(id)},
			"", 0, c.k.channel(), deleteNotice(id, n), n, "1"))
	}
	// The rewrite may be large: a longer bound than one operation's.
	rctx, cancel := context.WithTimeout(ctx, max(c.o.HeartbeatInterval, 10*c.o.Timeout))
	defer cancel()
	if _, err := pipe.Exec(rctx); err != nil {
		c.dirty.Store(true)
		return fmt.Errorf("rewriting node records: %w", err)
	}
	taken := map[string]bool{}
	for i, cmd := range rw {
		if v, _ := cmd.Int(); v == 0 {
			if i < len(puts) {
				taken[puts[i].id] = true
			} else {
				taken[delIDs[i-len(puts)]] = true
			}
		}
	}
	c.states.written(puts, dels, taken)
	ev := c.log.Info()
	if !all || first {
		ev = c.log.Debug()
	}
	ev.Int("calls", len(calls)).Int("states", len(puts)).Int("deletes", len(dels)).Int("taken_over", len(taken)).
		Bool("redis_had_lost_them", all).
		Msg("cluster: node records rewritten to Redis")
	return nil
}

// opContext bounds one operation.
func (c *Cluster) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.o.Timeout)
}

// gate says whether an operation may use Redis now.
func (c *Cluster) gate() error {
	if c.ctx.Err() != nil || c.left.Load() {
		return ErrClosed
	}
	if !c.ready.Load() {
		if c.up.Load() {
			return fmt.Errorf("%w: the node's records are being rewritten", ErrUnavailable)
		}
		return fmt.Errorf("%w: unreachable", ErrUnavailable)
	}
	return nil
}

// failed handles the error of an operation on Redis.
func (c *Cluster) failed(ctx context.Context, err error) error {
	switch {
	case c.ctx.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		// The caller gave up: not Redis's fault.
		return fmt.Errorf("cluster: %w", ctx.Err())
	}
	c.down(ctx, err)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// down records that Redis did not answer, logging the first time.
func (c *Cluster) down(ctx context.Context, err error) {
	if c.ctx.Err() != nil || ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return
	}
	c.ready.Store(false)
	c.up.Store(false)
	c.dirty.Store(true)
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if !c.downLogged {
		c.downLogged = true
		c.log.Error().Err(err).Strs("redis", c.o.Redis.Addrs).
			Msg("cluster: Redis unreachable: cluster-wide limits fall back to local limits and call state is kept here until Redis is back")
	}
}

// isUp records that Redis answered and the node's records are there.
func (c *Cluster) isUp() {
	c.hmu.Lock()
	wasDown, first := c.downLogged, !c.everUp
	c.downLogged, c.everUp = false, true
	c.up.Store(true)
	c.ready.Store(true)
	c.hmu.Unlock()
	switch {
	case wasDown:
		c.log.Info().Strs("redis", c.o.Redis.Addrs).Msg("cluster: Redis reachable again: cluster-wide limits apply")
	case first:
		c.log.Info().Strs("redis", c.o.Redis.Addrs).Msg("cluster: Redis reachable: cluster-wide limits apply")
	}
}

// keyspace names the Redis keys (see the package doc).
type keyspace struct{ p string }

func (k keyspace) nodes() string            { return k.p + "nodes" }
func (k keyspace) alive(node string) string { return k.p + "node:" + node + ":alive" }
func (k keyspace) calls(node string) string { return k.p + "node:" + node + ":calls" }
func (k keyspace) count(node string) string { return k.p + "node:" + node + ":count" }
func (k keyspace) state(id string) string   { return k.p + "state:" + id }
func (k keyspace) channel() string          { return k.p + "state-events" }

// statePattern matches every state key, the prefix's glob characters
// escaped.
func (k keyspace) statePattern() string {
	var b []byte
	for i := 0; i < len(k.p); i++ {
		switch ch := k.p[i]; ch {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\', ch)
		default:
			b = append(b, ch)
		}
	}
	return string(b) + "state:*"
}
