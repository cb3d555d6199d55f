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
	ReasonMaxCalls      = "max_calls"                 // AdmitRequest.Global.MaxCalls reached
	ReasonCPS           = "cps"                       // AdmitRequest.Global.CPS exceeded
	ReasonUnauthMax     = "unauthenticated_max_calls" // AdmitRequest.Unauthenticated.MaxCalls reached
	ReasonUnauthCPS     = "unauthenticated_cps"       // AdmitRequest.Unauthenticated.CPS exceeded
	ReasonTrunkMaxCalls = "trunk_max_calls"           // a trunk's MaxCalls reached
	ReasonTrunkCPS      = "trunk_cps"                 // a trunk's CPS exceeded
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

// TrunkLimit is the Limit of one trunk. A call is counted on each trunk it
// names, even without a cap.
type TrunkLimit struct {
	Name string
	Limit
}

// AdmitRequest asks for one new call, with the limits that apply to it as
// the local admission has them: Global (limits.max_calls, limits.cps),
// Unauthenticated when the caller showed no certificate
// (limits.unauthenticated_max_calls and _cps; nil otherwise), and its
// trunks: the caller's (trunks[].max_calls and cps) and the destination's
// (max_calls only). A trunk named twice counts once, with its first
// limits. The checks go in that order, concurrency before rates, and the
// first that fails is the reason.
type AdmitRequest struct {
	CallID          string
	Global          Limit
	Unauthenticated *Limit
	Trunks          []TrunkLimit
}

// Admitter checks and counts calls against limits that hold across every
// live node of the service. Get it from Cluster.Admitter.
type Admitter struct {
	c     *Cluster
	mu    sync.Mutex
	calls map[string][]string // the calls this node counts, with their count fields
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

// Adopt counts a call that this node carries in the groups req names
// (its trunks, the unauthenticated pool if Unauthenticated is not nil)
// without checking the limits or taking rate tokens: a call taken over from
// a node that was lost, or one admitted by local limits while Redis was
// unavailable. The call is recorded here first, so when Redis cannot be
// used now (the error then wraps ErrUnavailable, for information) it is
// counted when Redis is back. Release it when it ends, as any other.
func (a *Admitter) Adopt(ctx context.Context, req AdmitRequest) error {
	names, args, err := a.args(req, true)
	if err != nil {
		return err
	}
	callID := req.CallID
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

// args checks req and makes the admit script's arguments; fields are the
// count fields the call goes in besides "*".
func (a *Admitter) args(req AdmitRequest, force bool) (fields []string, args []any, err error) {
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
	var groups []any
	add := func(field string, l Limit, maxReason, cpsReason string) error {
		m, r, err := limitArgs(l)
		if err != nil {
			return err
		}
		groups = append(groups, field, m, r, maxReason, cpsReason)
		if field != "*" {
			fields = append(fields, field)
		}
		return nil
	}
	if err := add("*", req.Global, ReasonMaxCalls, ReasonCPS); err != nil {
		return nil, nil, err
	}
	if u := req.Unauthenticated; u != nil {
		if err := add("u", *u, ReasonUnauthMax, ReasonUnauthCPS); err != nil {
			return nil, nil, fmt.Errorf("unauthenticated: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, t := range req.Trunks {
		if t.Name == "" {
			return nil, nil, errors.New("cluster: admit: a trunk without a name")
		}
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		if err := add("t:"+t.Name, t.Limit, ReasonTrunkMaxCalls, ReasonTrunkCPS); err != nil {
			return nil, nil, fmt.Errorf("trunk %s: %w", t.Name, err)
		}
	}
	args = append([]any{a.c.o.Prefix, a.c.o.NodeID, req.CallID, f, len(groups) / 5}, groups...)
	return fields, args, nil
}

func limitArgs(l Limit) (int, string, error) {
	if math.IsNaN(l.CPS) || math.IsInf(l.CPS, 0) {
		return 0, "", fmt.Errorf("cluster: admit: cps %v", l.CPS)
	}
	return max(l.MaxCalls, 0), strconv.FormatFloat(max(l.CPS, 0), 'g', -1, 64), nil
}

// encodeFields is the calls hash's value (as the script writes it).
func encodeFields(fields []string) string {
	if len(fields) == 0 {
		return "{}" // cjson's empty table
	}
	b, _ := json.Marshal(fields)
	return string(b)
}
