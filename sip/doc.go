// Package sip is edge-sbc's back-to-back user agent (B2BUA) for SIP over
// TLS, built on github.com/emiago/sipgo.
//
// Where things happen:
//
//   - transport.go: every TLS connection starts here. The SBC accepts and
//     dials TCP itself, runs the TLS handshake itself (so it knows the
//     peer's verified certificate names and why a handshake failed), marks
//     the socket CS3, applies per-address caps, and only then hands the
//     connection to sipgo through a handoff listener. Outbound connections
//     carry SNI with the target host name (never an IP literal) and are
//     verified against the trunk identity.
//   - server.go: the method handler table (registerHandlers), lifecycle
//     (New does no I/O, Start serves listeners handed in, Close is
//     idempotent and waits), reload of the policy snapshot.
//   - policy.go: the SIPS-only rules for a new INVITE (416 for sip:, 400,
//     483, 505).
//   - admission.go: limits and loop detection, each result mapped to its
//     SIP status.
//   - inbound.go: a new call arrives (leg A); router.go: a route is chosen;
//     outbound.go: leg B is originated toward the RFC 3263 targets of the
//     destination trunk, with failover; dialog.go: everything inside a call
//     (ACK, BYE, re-INVITE, UPDATE, INFO, PRACK, OPTIONS, NOTIFY) is relayed
//     from one leg to the other.
//   - headers.go: topology hiding — every message is built from scratch;
//     only allow-listed headers cross.
//   - media.go / anchor.go: SDP goes through the media package, which
//     anchors every stream on the SBC's relay.
//   - cdr.go, metrics.go: call detail records and Prometheus collectors.
//
// Concurrency: sipgo runs each request handler in its own goroutine. The
// B2BUA's mutex guards the call and dialog tables; each call and each leg
// have their own mutex for their state; no I/O happens while a lock is
// held. Goroutines the B2BUA starts run through goOwned and are waited for
// by Close.
//
// Known limits: a caller's connection cannot be re-opened (callers are
// often behind NAT), so when it dies the call ends; REFER, SUBSCRIBE and
// MESSAGE are answered 405.
package sip
