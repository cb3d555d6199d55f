package sip

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/edge-sbc/edge-sbc/sip/cluster"
)

// This file is admission through a cluster (Options.Admitter, package
// sip/cluster): the limits a new call is checked against (limits.max_calls
// and cps, the unauthenticated caps, the caller trunk's max_calls and cps,
// the destination trunk's max_calls, exactly what plan.go checks) count
// the calls of every live node. Without an Admitter nothing here runs: the
// planner admits on the connection's reader, as it always did.
//
// A cluster admission is a Redis round trip, so it never runs on a
// connection's reader nor in a call's loop: the call is created in init,
// as for a local admission, and a helper goroutine admits it and posts the
// result (evAdmitted); only then is leg B placed. When Redis cannot be used
// the helper applies this node's own limits (the planner's counters, which
// count every call of this node either way) and, if they admit the call,
// Adopts it so that Redis counts it once it is back. A refused call is
// answered as the local admission answers it (503, the same Warning and
// Retry-After, the same reason in edge_sbc_admission_refused_total) and
// writes no CDR.
//
// What holds a slot, and when it is given back (exactly once):
//   - A call is counted under its key (c.admKey, the call's id) once
//     admitted; release gives it back (in a helper goroutine).
//   - A followed 3xx toward another destination trunk: the helper releases
//     the call's key and admits it again with only the new destination's
//     max_calls checked (no rate token: it is the same call), as the
//     planner moves the slot. Refused: the next contact is tried.
//   - A blind transfer (transfer.go) is a new call of its own: its key
//     (c.id/n) is admitted with the target trunk's max_calls checked, as the
//     planner checks it, and counts besides the call while the transfer
//     runs; when the transfer completes the call's old key is released and
//     the transfer's key becomes the call's; when it fails the transfer's
//     key is released.
//   - A result that arrives after the call ended (a CANCEL while the
//     helper admitted) is released when it arrives (afterEnd).

// SharedAdmitter counts calls against limits that hold across the nodes
// of a cluster; *cluster.Admitter is the one the command uses. Its methods
// may do network I/O, bounded by their own timeouts: the B2BUA calls them
// from helper goroutines only.
type SharedAdmitter interface {
	Admit(ctx context.Context, req cluster.AdmitRequest) (ok bool, reason string, err error)
	Adopt(ctx context.Context, req cluster.AdmitRequest) error
	Release(ctx context.Context, callID string) error
}

// admitTimeout bounds one admission or release through the cluster (each
// Redis operation has its own, shorter bound: cluster.DefaultTimeout).
const admitTimeout = time.Second

// admitPurpose says what an admission is for.
type admitPurpose uint8

const (
	admitCall     admitPurpose = iota // a new call
	admitRedirect                     // a followed 3xx toward another destination trunk
	admitTransfer                     // a blind transfer's new call
)

// admitResult is what a helper's admission decided, posted to the call.
type admitResult struct {
	purpose admitPurpose
	key     string
	held    bool // the cluster counts key: release it
	local   bool // decided by this node's limits (Redis unavailable)
	r       refusal
	why     string // the admission reason of a refusal; "" admitted

	// admitRedirect: the contacts left (the first is the one admitted),
	// the response code, the new destination and route.
	contacts []contactOut
	code     int
	to       *trunkRec
	rw       rewrites
	// admitTransfer: the REFER waiting for the decision.
	refer *pendingRefer
}

// refusalFor maps a cluster refusal reason to the refusal the local
// admission gives for the same reason.
func refusalFor(reason string) refusal {
	switch reason {
	case cluster.ReasonCPS, cluster.ReasonUnauthCPS, cluster.ReasonTrunkCPS:
		return refuseRateLimit
	}
	return refuseCallLimit
}

// callAdmitRequest is what a new call asks the cluster: the limits
// planner.admit checks, for the call's trunks.
func callAdmitRequest(s *policySnapshot, key string, pl *callPlan) cluster.AdmitRequest {
	lim := s.cfg.Limits
	req := cluster.AdmitRequest{
		CallID: key,
		Global: cluster.Limit{MaxCalls: lim.MaxCalls, CPS: lim.CPS},
		Trunks: []cluster.TrunkLimit{
			{Name: pl.from.name, Limit: cluster.Limit{MaxCalls: pl.from.maxCalls, CPS: pl.from.cps}},
			{Name: pl.to.name, Limit: cluster.Limit{MaxCalls: pl.to.maxCalls}},
		},
	}
	if pl.unauth {
		req.Unauthenticated = &cluster.Limit{MaxCalls: lim.UnauthenticatedMaxCalls, CPS: lim.UnauthenticatedCPS}
	}
	return req
}

// moveAdmitRequest counts key again in the groups of a call whose trunks
// are now from and to (and the unauthenticated pool when unauth), with
// only check's max_calls checked (nil: nothing): a followed 3xx, a
// transfer.
func moveAdmitRequest(key string, first, second *trunkRec, unauth bool, check *trunkRec) cluster.AdmitRequest {
	req := cluster.AdmitRequest{CallID: key}
	// The trunk checked goes first; each trunk is named once.
	named := func(name string) bool {
		for _, tl := range req.Trunks {
			if tl.Name == name {
				return true
			}
		}
		return false
	}
	for _, t := range []*trunkRec{check, first, second} {
		if t == nil || named(t.name) {
			continue
		}
		l := cluster.Limit{}
		if t == check {
			l.MaxCalls = t.maxCalls
		}
		req.Trunks = append(req.Trunks, cluster.TrunkLimit{Name: t.name, Limit: l})
	}
	if unauth {
		req.Unauthenticated = &cluster.Limit{}
	}
	return req
}

// admitShared starts the cluster admission of req in a helper goroutine;
// local is the check of this node's limits used when Redis is unavailable
// (it must not touch what the call's loop owns), release a key the helper
// releases first ("" none). The result comes back as evAdmitted.
func (c *call) admitShared(res admitResult, req cluster.AdmitRequest, local func() (refusal, string), release string) {
	b := c.b
	c.admitting = true
	if !b.spawn(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(b.lifetime()), admitTimeout)
		defer cancel()
		if release != "" {
			if err := b.shared.Release(ctx, release); err != nil && !errors.Is(err, cluster.ErrUnavailable) {
				b.log.Debug().Err(err).Str("call", c.id).Msg("cluster: release failed")
			}
		}
		out := b.sharedAdmit(ctx, req, local, res)
		c.post(event{kind: evAdmitted, adm: &out})
	}) {
		c.admitting = false
		res.r, res.why = refuseDraining, "draining"
		c.onAdmitted(&res)
	}
}

// sharedAdmit asks the cluster, falling back to local when Redis cannot
// be used. It runs in a helper goroutine.
func (b *B2BUA) sharedAdmit(ctx context.Context, req cluster.AdmitRequest, local func() (refusal, string), res admitResult) admitResult {
	res.key = req.CallID
	ok, reason, err := b.shared.Admit(ctx, req)
	switch {
	case err == nil && ok:
		res.held = true
	case err == nil:
		res.r, res.why = refusalFor(reason), reason
	case errors.Is(err, cluster.ErrUnavailable):
		res.local = true
		if r, why := local(); why != "" {
			res.r, res.why = r, why
			return res
		}
		// Counted here now, and in Redis once it is back.
		res.held = true
		if err := b.shared.Adopt(ctx, req); err != nil && !errors.Is(err, cluster.ErrUnavailable) {
			b.log.Debug().Err(err).Str("key", req.CallID).Msg("cluster: adopt failed")
		}
	default: // the cluster is closed (shutting down), or the request is bad
		b.log.Debug().Err(err).Str("key", req.CallID).Msg("cluster: admission failed")
		res.r, res.why = refuseDraining, "draining"
	}
	return res
}

// releaseShared gives the cluster slot of key back, in a helper goroutine
// (in the loop when the B2BUA no longer spawns: it is closing).
func (c *call) releaseShared(key string) {
	if key == "" {
		return
	}
	b := c.b
	f := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(b.lifetime()), admitTimeout)
		defer cancel()
		if err := b.shared.Release(ctx, key); err != nil && !errors.Is(err, cluster.ErrUnavailable) {
			b.log.Debug().Err(err).Str("key", key).Msg("cluster: release failed")
		}
	}
	if !b.spawn(f) {
		f()
	}
}

// nextAdmitKey is a new key for an admission of the call besides its own
// (a transfer's new call).
func (c *call) nextAdmitKey() string {
	c.admSeq++
	return c.id + "/" + strconv.Itoa(c.admSeq)
}

// admitCallShared starts the cluster admission of a new call (onInvite,
// before the call's first event).
func (c *call) admitCallShared() {
	b, s, pl := c.b, c.snap, c.plan
	req := callAdmitRequest(s, c.id, pl)
	c.admitShared(admitResult{purpose: admitCall}, req, func() (refusal, string) {
		return b.planner.admit(s, pl)
	}, "")
}

// onAdmitted handles an admission's result in the call's loop (a call
// released meanwhile: afterEnd).
func (c *call) onAdmitted(res *admitResult) {
	c.admitting = false
	switch res.purpose {
	case admitCall:
		if res.why != "" {
			c.notAdmitted = true
			c.b.metrics.Admission.WithLabelValues(res.why).Inc()
			c.log.Info().Str("call_id_a", c.a.callID).Str("trunk", c.plan.from.name).Int("code", res.r.code).
				Str("admission", res.why).Bool("local_limits", res.local).
				Str("ruri_user", c.ruriUser).Str("ruri_host", c.ruriHost).Msg("INVITE not admitted")
			// The same response as a local refusal (rejectInline).
			if c.inv != nil && !c.inv.isFinal() {
				c.respond(c.inv, c.b.refusalResponse(c.inv.req, res.r, c.a.localTag, ""))
			}
			c.terminate("sbc", "admission: "+res.why, res.r.code)
			return
		}
		c.admKey = res.key
		if !res.local {
			c.b.planner.count(c.snap, c.plan)
		}
		c.logStart()
		c.b.gate.start(c) // evStart: originate
	case admitRedirect:
		c.onRedirectAdmitted(res)
	case admitTransfer:
		c.onTransferAdmitted(res)
	}
}

// afterAdmitted releases what an admission that arrived after the call's
// release holds.
func (c *call) afterAdmitted(res *admitResult) {
	c.admitting = false
	if res.held {
		c.releaseShared(res.key)
	}
}
