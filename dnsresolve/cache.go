package dnsresolve

import (
	"container/list"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// defaultCacheSize bounds the number of (name, type) entries kept.
const defaultCacheSize = 10000

type cacheKey struct {
	name  string // lower-case FQDN with trailing dot
	qtype uint16
}

// negKind tells a negative cache entry (RFC 2308) from a positive one.
type negKind uint8

const (
	negNone negKind = iota
	negNXDomain
	negNoData
)

// rrset is the cached result of one query. Its slices are shared between
// all readers and must never be modified after being stored.
type rrset struct {
	srv   []srvRecord  // qtype SRV
	addrs []netip.Addr // qtype A or AAAA
	neg   negKind
}

type cacheEntry struct {
	key     cacheKey
	set     rrset
	expires time.Time
	elem    *list.Element // position in cache.order
}

// cache is a bounded TTL cache of rrsets keyed by (name, type). It is safe
// for concurrent use. Expired entries are dropped when read; when the cache
// is full the oldest inserted entry is evicted. Since every TTL is clamped
// to MaxTTL, the oldest inserted entry is also the one closest to expiry
// give or take the TTL spread, which makes FIFO a cheap and adequate policy.
type cache struct {
	mu    sync.Mutex
	limit int
	items map[cacheKey]*cacheEntry
	order *list.List // of *cacheEntry, oldest insertion at the front
}

func newCache(limit int) *cache {
	return &cache{limit: limit, items: make(map[cacheKey]*cacheEntry), order: list.New()}
}

// get returns the entry for k if present and not expired at now.
func (c *cache) get(k cacheKey, now time.Time) (rrset, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return rrset{}, false
	}
	if !now.Before(e.expires) {
		c.removeLocked(e)
		return rrset{}, false
	}
	return e.set, true
}

// put stores set under k until now+ttl, replacing any previous entry.
func (c *cache) put(k cacheKey, set rrset, now time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.items[k]; ok {
		c.removeLocked(old)
	}
	for len(c.items) >= c.limit {
		front := c.order.Front()
		if front == nil {
			break
		}
		c.removeLocked(front.Value.(*cacheEntry))
	}
	e := &cacheEntry{key: k, set: set, expires: now.Add(ttl)}
	e.elem = c.order.PushBack(e)
	c.items[k] = e
}

func (c *cache) removeLocked(e *cacheEntry) {
	c.order.Remove(e.elem)
	delete(c.items, e.key)
}

// len reports the number of entries, expired or not.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// flight collapses concurrent identical lookups into one upstream query
// (the "singleflight" pattern). It is safe for concurrent use.
type flight struct {
	mu    sync.Mutex
	calls map[cacheKey]*flightCall
}

type flightCall struct {
	done chan struct{} // closed when set and err are final
	set  rrset
	err  error
	dups int // callers that joined; guarded by flight.mu, for tests
}

// do runs fn once for k among concurrent callers: the first caller (the
// leader) runs fn itself, synchronously; callers arriving while it runs
// wait for its result or for their own ctx to end, whichever comes first. shared reports whether
// the result came from another caller's fn.
func (f *flight) do(ctx context.Context, k cacheKey, fn func() (rrset, error)) (set rrset, err error, shared bool) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[cacheKey]*flightCall)
	}
	if c, ok := f.calls[k]; ok {
		c.dups++
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.set, c.err, true
		case <-ctx.Done():
			return rrset{}, fmt.Errorf("dnsresolve: query %s: %w", k.name, context.Cause(ctx)), true
		}
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.set, c.err = fn()
	return c.set, c.err, false
}

// waiters reports how many callers joined the in-flight call for k.
func (f *flight) waiters(k cacheKey) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[k]; ok {
		return c.dups
	}
	return 0
}
