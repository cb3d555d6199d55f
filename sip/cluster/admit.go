package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
)

// Reasons Admit gives for a refusal: the same words as the B2BUA's local
// admission.
const (
	ReasonMaxCalls      = "max_calls"       // AdmitRequest.Global.MaxCalls reached
	ReasonCPS           = "cps"             // AdmitRequest.Global.CPS exceeded
	ReasonTrunkMaxCalls = "trunk_max_calls" // a trunk's MaxCalls reached
	ReasonTrunkCPS      = "trunk_cps"       // a trunk's CPS exceeded
)

// MaxCallIDLen bounds the call ids of Admit and StateStore.
const MaxCallIDLen = 1024

// Limit is a cap on concurrent calls and on new calls per second; 0 (or
// less) is no cap. CPS is a token bucket of burst max(CPS, 1), as the
// local limits are.
type Limit struct {
	MaxCalls int
	CPS      float64
}

// TrunkLimit is the Limit of one named group of calls: a trunk (the
// caller's and the destination's), or any other group the B2BUA counts
// (e.g. the unauthenticated peers). Every call is counted against each
// name it carries, even with no cap.
type TrunkLimit struct {
	Name string
	Limit
}

// AdmitRequest asks for one new call. A name given twice counts once
// (with its first limits).
type AdmitRequest struct {
	CallID string
	Trunks []TrunkLimit
	Global Limit
}

// Admitter checks and counts calls against limits that hold across every
// live node of the service. Get it from Cluster.Admitter.
type Admitter struct {
	c     *Cluster
	mu    sync.Mutex
	calls map[string][]string // the calls this node counts, with their names
}

// Up reports whether Redis is reachable (Cluster.Up).
func (a *Admitter) Up() bool { return a.c.Up() }

// Admit checks req's limits against the calls of every live node and, when
// all pass, counts the call on this node and takes one token from each rate
// limit, atomically (one EVALSHA).
//
//   - (true, "", nil): admitted; Release it when the call ends.
//   - (false, reason, nil): refused by a cluster-wide limit; reason is a
//     Reason* constant (which trunk: not said, as locally).
//   - (false, "", err): err wraps ErrUnavailable when Redis cannot be used
//     (returned at once while it is known down, else within
//     Options.Timeout): admit by local limits instead, and if admitted
//     call Adopt so that the call is counted once Redis is back. Other
//     errors are a bad request (empty call id) or ErrClosed.
//
// A call id already admitted on this node is admitted again without being
// counted twice.
func (a *Admitter) Admit(ctx context.Context, req AdmitRequest) (ok bool, reason string, err error) {
	names, args, err := a.args(req, false)
	if err != nil {
		return false, "", err
	}
	a.mu.Lock()
	_, have := a.calls[req.CallID]
	a.mu.Unlock()
	if have {
		return true, "", nil
	}
	c := a.c
	if err := c.gate(); err != nil {
		return false, "", err
	}
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	octx, cancel := c.opContext(ctx)
	res, err := c.sc.admit.Run(octx, c.rdb, nil, args...).Slice()
	cancel()
	if err != nil {
		return false, "", c.failed(ctx, err)
	}
	if len(res) < 2 {
		return false, "", c.failed(ctx, fmt.Errorf("admit script returned %v", res))
	}
	if n, _ := res[0].(int64); n != 1 {
		reason, _ = res[1].(string)
		return false, reason, nil
	}
	a.mu.Lock()
	a.calls[req.CallID] = names
	a.mu.Unlock()
	return true, "", nil
}

// Adopt counts a call that this node carries without checking any limit
// or taking rate tokens: a call taken over from a node that was lost, or
// one admitted by local limits while Redis was unavailable. The call is
// recorded here first, so when Redis cannot be used now (the error then
// wraps ErrUnavailable, for information) it is counted when Redis is back.
// Release it when it ends, as any other.
func (a *Admitter) Adopt(ctx context.Context, callID string, trunks []string) error {
	req := AdmitRequest{CallID: callID}
	for _, t := range trunks {
		req.Trunks = append(req.Trunks, TrunkLimit{Name: t})
	}
	names, args, err := a.args(req, true)
	if err != nil {
		return err
	}
	c := a.c
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	a.mu.Lock()
	_, have := a.calls[callID]
	a.calls[callID] = names
	a.mu.Unlock()
	if have {
		return nil
	}
	if err := c.gate(); err != nil {
		c.dirty.Store(true)
		return err
	}
	octx, cancel := c.opContext(ctx)
	err = c.sc.admit.Run(octx, c.rdb, nil, args...).Err()
	cancel()
	if err != nil {
		c.dirty.Store(true)
		return c.failed(ctx, err)
	}
	return nil
}

// Release uncounts a call of this node; it frees the slot exactly once: a
// call it does not count (never admitted, or released already) is nothing.
// One EVALSHA. An error wrapping ErrUnavailable needs nothing from the
// caller: the call is forgotten here, and Redis learns it with the node's
// records when it is back.
func (a *Admitter) Release(ctx context.Context, callID string) error {
	c := a.c
	c.syncMu.RLock()
	defer c.syncMu.RUnlock()
	a.mu.Lock()
	_, have := a.calls[callID]
	delete(a.calls, callID)
	a.mu.Unlock()
	if !have {
		return nil
	}
	if err := c.gate(); err != nil {
		c.dirty.Store(true)
		return err
	}
	octx, cancel := c.opContext(ctx)
	err := c.sc.release.Run(octx, c.rdb, nil, c.o.Prefix, c.o.NodeID, callID).Err()
	cancel()
	if err != nil {
		c.dirty.Store(true)
		return c.failed(ctx, err)
	}
	return nil
}

// Calls is the number of calls this node counts.
func (a *Admitter) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

// snapshot copies the calls this node counts.
func (a *Admitter) snapshot() map[string][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string][]string, len(a.calls))
	for id, t := range a.calls {
		m[id] = t
	}
	return m
}

// args checks req and makes the admit script's arguments.
func (a *Admitter) args(req AdmitRequest, force bool) ([]string, []any, error) {
	if req.CallID == "" {
		return nil, nil, errors.New("cluster: admit: empty call id")
	}
	if len(req.CallID) > MaxCallIDLen {
		return nil, nil, fmt.Errorf("cluster: admit: call id of %d bytes", len(req.CallID))
	}
	f := "0"
	if force {
		f = "1"
	}
	gmax, gcps, err := limitArgs(req.Global)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var targs []any
	seen := map[string]bool{}
	for _, t := range req.Trunks {
		if t.Name == "" {
			return nil, nil, errors.New("cluster: admit: a trunk without a name")
		}
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		m, r, err := limitArgs(t.Limit)
		if err != nil {
			return nil, nil, fmt.Errorf("trunk %s: %w", t.Name, err)
		}
		names = append(names, t.Name)
		targs = append(targs, t.Name, m, r)
	}
	args := append([]any{a.c.o.Prefix, a.c.o.NodeID, req.CallID, f, gmax, gcps, len(names)}, targs...)
	return names, args, nil
}

func limitArgs(l Limit) (int, string, error) {
	if math.IsNaN(l.CPS) || math.IsInf(l.CPS, 0) {
		return 0, "", fmt.Errorf("cluster: admit: cps %v", l.CPS)
	}
	return max(l.MaxCalls, 0), strconv.FormatFloat(max(l.CPS, 0), 'g', -1, 64), nil
}

// encodeTrunks is the calls hash's value (as the script writes it).
func encodeTrunks(names []string) string {
	if len(names) == 0 {
		return "{}" // cjson's empty table
	}
	b, _ := json.Marshal(names)
	return string(b)
}
