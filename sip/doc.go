// Package sip is edge-sbc's back-to-back user agent (B2BUA) for SIP over
// TLS. It uses github.com/emiago/sipgo for what SIP is made of (the
// stream parser, messages, headers, URIs) and carries its own connection
// handling and RFC 3261 transaction layer, because both decide in which
// order a call sees what happened.
//
// # Where things happen
//
// One INVITE reads straight through these files:
//
//   - transport.go: every TLS connection starts here (accept or dial, the
//     handshake, the peer's verified identity, the connection caps) and
//     every SIP message enters here: each connection is read by one
//     goroutine, parsed with sipgo's stream parser, and each message is
//     handed on in arrival order. Writes go out under limits.write_timeout.
//   - server.go: the B2BUA's lifecycle and the dispatcher (onMessage): a
//     message is matched to its transaction (txn.go), its dialog (and so
//     its call) or a handler for requests outside a dialog (handler: the
//     one place where methods meet their handlers).
//   - inbound.go: a new INVITE: the SIPS policy (policy.go), the caller's
//     trunk, the plan (plan.go: route and admission, no I/O; router.go
//     chooses the route), then the call. With a cluster (Options.Admitter,
//     package sip/cluster) the admission is cluster-wide and takes a Redis
//     round trip: admission.go runs it in a helper goroutine and posts its
//     result to the call, which places leg B only then; followed 3xx and
//     transfers move or take slots the same way.
//   - call.go: the call's owner: its state, the one function that changes
//     it (setState), the event loop (drain), the one release.
//   - outbound.go: leg B toward the destination's RFC 3263 targets: failover,
//     forks, CANCEL of abandoned targets, 3xx, early media.
//   - indialog.go: requests and responses inside a call, relayed from leg to
//     leg with the offer/answer bookkeeping (leg.go), glare and rollback.
//   - sessiontimer.go: RFC 4028; reply.go: every response the SBC composes
//     itself and the one mapping from errors to status codes; headers.go:
//     topology hiding and the trust boundary; body.go: SDP and multipart
//     bodies; anchor.go and media.go: the one narrow interface to media/.
//   - cdr.go, metrics.go: call detail records and Prometheus collectors.
//   - state.go: with a cluster (Options.States), the state of an answered
//     call (CallState: both dialogs, trunks, session timer, the media
//     session's snapshot) written when the call is confirmed and after
//     each completed exchange, refresh or transfer, deleted at its end.
//   - takeover.go: with a cluster, the calls of a lost node rebuilt from
//     their CallState (B2BUA.Takeover; the command calls it on SIGUSR1
//     and when the service address appears on one of its interfaces,
//     one takeover at a time, the second skipping the calls it carries):
//     confirmed at once, media restored on the same relay ports
//     (media.Engine.Restore), dialogs registered, session timer
//     continued, slot adopted, state written again under this node's id;
//     the peers' next requests arrive on new connections (accepted by the
//     trunk's identity), and each leg's remote target is dialed.
//   - handoff.go: with a cluster, the hand-over of a node that stops
//     (B2BUA.Handoff, on SIGTERM with shutdown.handoff in the command):
//     each confirmed call's state written once more and waited for, then
//     the call released without BYE, CDR, slot release or state delete,
//     for the node that takes it over; calls in setup are left for Close.
//
// # One owner per call
//
// Order is decided at the socket. A connection's reader parses messages
// in the order the peer sent them and hands each, before reading the next,
// to the dispatcher, which finds the call and queues the message as an
// event on the call. Everything that happens to a call is such an event,
// handled one at a time by the call's event loop: requests and responses
// of both legs, CANCEL, ACK, the results of DNS and dialing (which run in
// helper goroutines so the loop never waits on the network), a cluster
// admission's result, timers
// (answer, provisional, 2xx retransmission, ACK wait, PRACK wait, session
// expiry and refresh), media timeout, connection loss, hangup (drain,
// shutdown). So a 180 and a 200 written back to back reach the caller in
// that order, and a CANCEL and a 200 that cross are handled in the order
// they arrived, each seeing the other's effects.
//
// The loop is a queue with a goroutine that exists only while the queue
// is not empty (call.post / call.drain): an idle call, a ringing or
// answered one, costs no goroutine, and no two goroutines ever handle
// events of the same call. A dedicated goroutine per call would be as
// correct but holds a stack for the whole call (thousands of calls); a
// mutex per call would serialise handlers but not preserve arrival order.
// The queue of network events is bounded (maxQueue): a reader waits when a
// call's queue is full, which stops reading that connection (TCP
// backpressure) instead of growing memory.
//
// # Call states
//
//	       INVITE admitted
//	             |
//	           init ----------------------------+
//	             | INVITE sent to a target      |
//	             v                              |
//	+------> calling <----+ failover, 3xx       |
//	|            | 100    |                     |
//	|            v        |                     |
//	|       proceeding ---+                     |
//	|            | 18x with a To tag            | refused, cancelled,
//	|            v                              | every target failed,
//	+-------- early                             | no answer
//	             | first 2xx: sent to the caller|
//	             v                              |
//	        connecting -----------------------+ |
//	             | the caller's ACK           | |
//	             v                            | |
//	        confirmed ---- BYE, lost ----+    | |
//	                                     v    v v
//	                                    terminating
//	                   (a CANCEL owed once a target rings, a BYE owed
//	                    once the caller ACKs; both bounded by 64*T1)
//	                                         |
//	                                         v
//	                                     terminated: release ran
//
// A call taken over from another node of a cluster (takeover.go) starts
// in confirmed: it was confirmed where it began. A call handed over
// (handoff.go) goes from confirmed to terminated directly: release runs
// with nothing sent to the peers.
//
// With a cluster, init also covers the admission in flight: a call the
// cluster (or, with Redis unreachable, the local limits) refuses goes
// from init to terminated with the refusal a local admission gives, and
// writes no CDR.
//
// setState refuses any other change. release runs exactly once, entering
// terminated: dialogs, server and client transactions, timers, the media
// session and its ports, the admission slot (a cluster slot is given back
// in a helper goroutine; one whose admission was still in flight when
// the call ended is given back when the result arrives), the connections'
// use, then the CDR and the metrics. Events that still arrive for a released call
// get 481, or, for a 2xx to an INVITE, ACK and BYE built from the
// response.
//
// # Offer/answer per leg (RFC 3264, RFC 6337)
//
//	none --offer sent--> offer_sent --answer in unreliable 18x--> early_answer
//	  |                      |                                        |
//	  +--offer received--> offer_received --answer (2xx, reliable 18x,|
//	                         |              PRACK, UPDATE 2xx, ACK)---+--> stable
//	                         +-- rejected (488, 491, 500, timeout) --> back to
//	                             stable (re-offer) or none (initial)
//
// Each leg's state (leg.oa) says who owes an answer; the media session
// keeps the agreed SDP apart from the one being negotiated, so a rejected
// re-offer rolls the relay and hold state back (MediaSession.Reject). An
// offer while another is outstanding on either leg is glare: 491 (RFC
// 3261 §14.1, RFC 3311 §5.2). An answer that crossed in an unreliable 18x
// is repeated in the 2xx when the callee's 2xx has none.
//
// # Lock rules
//
// No lock is ever held across network I/O or while posting to a call.
//   - B2BUA.mu guards calls, dialogs, trusted and closed.
//   - txLayer.mu guards the transaction tables; serverTx.mu a server
//     transaction's last response; clientTx.mu its timer.
//   - conn.omu guards a connection's write queue (never held across the
//     write: one writer at a time flushes what all queued, bounded by
//     limits.write_timeout; no writer ever waits for room: one that would
//     overfill the queue closes the connection, so a connection's reader,
//     which writes too, never stops reading because of its own writes);
//     conn.mu guards the calls using it and its pending count.
//   - call.qmu guards a call's event queue only; every other field of a
//     call and its legs is owned by the call's event loop.
//   - stateWriter.mu guards a call's queued state write (state.go): the
//     loop queues, a helper goroutine writes, neither holds it across I/O.
//   - planner.mu guards the admission counters and rate buckets, and each
//     plan's counted and released marks (a cluster admission's helper
//     counts a plan while the call's loop may release it).
//   - setupGate.mu guards the queue of new calls waiting while the SBC is
//     behind (overload.go), setupGate.smu its run-queue sample; a waiting
//     call is posted to after mu is released.
//   - The cluster's Admitter (sip/cluster) has its own locks and does
//     network I/O: only helper goroutines call it, never a connection's
//     reader or a call's loop.
//
// These are leaf locks: code holding one never takes another, except the
// event loop, which holds none while it takes any one of them.
//
// # Goroutines
//
// Every goroutine has an owner that stops it: the accept loops, the
// keepalive and housekeeping loops, the setup gate's releaser (while
// new calls wait) and the calls' loops and helpers
// (DNS, dialing, cluster admissions and releases, state writes, the dials
// of a call taken over) belong to
// the B2BUA (Close waits for them); handshakes and connection
// readers to the transport (Close closes the connections and waits).
//
// # Known limits
//
// A caller's connection cannot be re-opened (callers are often behind
// NAT), so when it dies the call ends; REFER, SUBSCRIBE and MESSAGE are
// answered 405.
//
// With a cluster, a call taken over (takeover.go) carries on with what its
// last state write held (after a hand-over: the state written at the
// stop, or the last settled one when an exchange was in flight); what
// does not survive the loss or hand-over of its node:
//   - calls not answered yet, and transactions in flight (a re-INVITE, an
//     UPDATE, a transfer): no state is written before they complete;
//   - the TLS connections: toward leg B and toward a caller whose Contact
//     can be reached, new ones are dialed at once; a caller behind NAT is
//     reached again only once it sends a request (a BYE from the callee
//     before that cannot be delivered to the caller: the call ends on leg
//     B only, and the caller's own media timeout or BYE ends its side);
//   - an in-dialog request from a peer before its leg's connection is
//     back (a re-INVITE from the callee while the caller has not
//     reconnected) is refused as any request the other leg cannot take;
//   - a caller without a certificate (an unauthenticated trunk): its new
//     connection cannot be matched to the call, its requests get 403;
//   - the route's transforms (only used for leg B's INVITE) and the media
//     quality figures, codec and clock rates of the lost node's part of the
//     call (the CDR's media statistics are the new node's only; MOS and
//     jitter are not computed on a restored stream until a new SDP).
package sip
