// Package media anchors the media of edge-sbc calls: every m= stream of a
// call crosses two UDP ports of the SBC, one facing side A (caller) and one
// facing side B (callee). By default SRTP is passed through: packets are
// relayed byte-identical, never decrypted, and a=crypto lines are kept
// untouched (and never logged). A session may instead terminate SRTP per
// leg (see SRTP termination).
//
// # API
//
// An Engine owns the port pool, the sessions and the dead-media watchdog.
// The SIP layer creates one Session per call and feeds it the SDP of the
// offer/answer exchanges:
//
//	eng, _ := media.NewEngine(media.Config{...}, log) // no I/O
//	_ = eng.Start(ctx)                                  // dead-media watchdog
//	sess := eng.NewSession(media.SessionConfig{CallID: id, AdvertiseA: a, AdvertiseB: b})
//	toB, err := sess.Offer(media.SideA, sdpFromA)  // ErrNotAcceptable → 488, ErrPortsExhausted → 503
//	toA, err := sess.ProvisionalAnswer(media.SideB, sdpIn183) // unreliable 18x: early media
//	toA, err = sess.Answer(media.SideB, sdpIn200)  // commits
//	sess.Reject(media.SideA)                       // or: the offer was refused, roll back
//	stats := sess.Close()                          // ports go back after the quarantine
//
// # Offer/answer state
//
// A Session keeps, like pjmedia's sdp_neg, an agreed (active) state and at
// most one offer being negotiated (RFC 3264, RFC 6337):
//
//	                    Offer(X)
//	+------------+  ---------------->  +---------------------+
//	|   agreed   |                     | offer from X        | <-+ ProvisionalAnswer(Y), 0..n
//	| (empty at  |  <--- Answer(Y) --  | pending             | --+ Offer(X): replaces it
//	|  first)    |       commits       | (agreed state kept) |     Offer(Y): ErrOfferPending
//	+------------+  <--- Reject(X) --  +---------------------+
//	                     rolls back
//
// (X is either side, Y the other one.) Offer stages the offer: the
// offerer's addresses, directions and first SRTP keys apply at once, so
// media toward the offerer flows, and added streams get their ports; but a
// snapshot of the agreed state is kept, and streams the offer removes (port
// 0, another media type) keep relaying. ProvisionalAnswer applies an
// answer from an unreliable 18x (the answerer's addresses, the keys of both
// legs: early media both ways) and leaves the offer pending. Answer (2xx,
// reliable 18x or PRACK, UPDATE 2xx, ACK) applies the final answer and
// commits: rejected and removed streams are closed, the result is the new
// agreed state. Reject restores the snapshot: streams the offer created are
// closed, removed ones stay, addresses, holds and SRTP contexts of both
// legs are those agreed before; after a refused initial offer the session
// has no stream. Pending tells whose offer is pending. The o= version sent
// toward a side only grows, whatever is rolled back.
//
// # SDP anchoring
//
// For every m= line with a non-zero port the session allocates a port pair
// (even RTP port, odd RTCP port) on each leg and rewrites the SDP sent to
// a side with that side's advertise address and ports: session and media
// c=, the m= port, a=rtcp (to our RTP port + 1) and the o= address, with a
// per-side session version that increments only when the SDP content
// changes. ICE attributes and a=group:BUNDLE are removed; every other
// attribute is kept, in order. Rejected streams (port 0) allocate nothing.
// The relay is UDP only: an m-line whose proto starts with TCP (TCP/BFCP,
// TCP/TLS/BFCP, TCP/RTP/AVP, ...) is rejected. The offer forwarded to the
// other side carries port 0 for it, no port is allocated, and an answer
// accepting it anyway is sent to the offerer with port 0, so content
// sharing over TCP BFCP fails visibly in the SDP instead of silently on a
// UDP port nobody uses.
// A re-offer from either side matches streams by m-line index and updates
// them in place: ports and sockets are kept, only the destination and the
// per-stream state change, so no packet is lost; streams are released when
// the answer commits (see Offer/answer state). Direction attributes
// other than sendrecv (and c=0.0.0.0) mark a stream on hold.
//
// The pool always reserves the whole pair, but the RTCP sockets are opened
// only for RTP streams whose RTCP is not multiplexed (the offer lacks
// a=rtcp-mux, or the answer refuses it); non-RTP streams such as BFCP never
// get one. Webex endpoints mux RTCP, so the common call costs one socket
// per leg and stream.
//
// # Relay design
//
// Each relay socket has one reader goroutine, which blocks in the Go
// netpoller until a datagram arrives. It then receives up to 8 datagrams
// with one recvmmsg(2), checks and accounts them, and sends the accepted
// ones with one sendmmsg(2) through the socket facing the other side, from
// the very buffers it received them into: no copy, no allocation. Message
// headers, iovecs and socket address buffers are prepared once per
// reader; the destination is an immutable endpoint (netip.AddrPort plus
// its raw sockaddr) published through an atomic.Pointer, so the reader
// loads it once per batch and a new endpoint is allocated only when an
// address changes (signalling or latching), never per packet.
//
// golang.org/x/net/ipv4.PacketConn.ReadBatch would do the same system
// call, but it allocates a net.IP and a *net.UDPAddr for every received
// message; the batch I/O (batch_linux.go) therefore calls recvmmsg and
// sendmmsg directly through syscall.RawConn with bound method values. On
// other systems a portable fallback uses ReadFromUDPAddrPort and
// WriteToUDPAddrPort, one datagram per call, also without allocation.
//
// One goroutine per socket was chosen over an epoll loop of our own: the
// netpoller parks blocked readers for free (no thread, no wakeup), the
// code stays simple, and a reader needs no lock for the buffers it borrows.
// Measured on Go 1.26/linux-amd64 (TestFootprint): a parked reader
// goroutine uses about 2–4 KB of stack; an rtcp-muxed audio call (two
// sockets, two readers) about 21 KB in total, 13 KB of it heap. Readers do
// not own their batch buffers: a reader borrows 8 x 2.1 KB from the
// engine's pool inside the recvmmsg callback, relays the batch from those
// same buffers and gives them back after sendmmsg; when recvmmsg would
// block, the buffers go back before the goroutine parks. Idle or waiting
// streams therefore hold no buffer memory, and only the batches in flight
// (at most a few per CPU) do. The pool stores pointers, so lending
// allocates nothing in the steady state.
// BenchmarkRelayPassthrough measures about 3 µs per 172-byte packet on
// loopback, client send and receive system calls included, 0 allocations.
//
// # Endpoint learning
//
// A stream's destination toward a side is first the address:port from
// that side's SDP, then the source of the packets that side sends
// (symmetric latching, for NATs). Which sources may move it is
// Config.Learning, as in rtpengine:
//
//   - LearningHeuristic (default): every SDP of either side (offer,
//     answer, re-offer) starts learning anew and opens a learning window
//     (Config.LearnWindow, 3 s; if no packet comes in it, it starts again
//     at the first one). The first packet's source is learned; a better
//     source replaces it: the SDP's IP with another port beats another
//     address, and exactly the signalled address:port beats both and locks
//     at once. When the window ends the learned source is locked. The
//     answer restarting the offerer's learning too means a stranger
//     learned while the call rang does not stay. A locked source gives way
//     only to exactly the signalled address:port, or to a proven NAT
//     rebind: the locked source has been silent for Config.RebindSilence
//     (2 s) and the new source sends 3 RTP packets with the SSRC last seen
//     from the locked one and continuous sequence numbers (on a separate
//     RTCP port, which has no sequence numbers, one RTCP packet with that
//     SSRC). A genuine rebind therefore recovers about 2 s after the old
//     source fell silent. Streams that do not carry RTP (BFCP) have no
//     SSRC: their source moves only with a new SDP.
//   - LearningStrict, or Config.StrictSource: only packets from the
//     signalled address:port are accepted and nothing is latched.
//   - LearningOff: every packet from a new source moves the destination
//     at once (the behaviour before learning). Anyone who guesses a relay
//     port can then take a stream over ("RTP bleed"); relay ports are
//     handed out at random, which makes guessing harder, not impossible.
//
// On a leg that terminates SRTP the authentication decides instead: only
// authentic packets move the destination, from any source. A re-offer
// repeating the same address keeps the latched destination; a changed
// address replaces it. Packets that are not accepted are dropped without
// being relayed or counted as media (so they do not keep a dead call
// alive either), and without allocating. Drops are counted per reason:
// stranger (not the accepted source), rebind_pending (carrying the
// stream's SSRC from a new source, a NAT rebind not proven yet),
// no_destination, oversize (datagram larger than 2048 bytes), send_error,
// and with SRTP termination auth, replay and no_key.
//
// # SRTP termination
//
// SessionConfig.ModeA and ModeB choose, per leg, SRTPPassthrough (the
// zero value), SRTPTerminate (the SBC is the SRTP endpoint of the leg,
// with its own SDES keys, RFC 4568) or SRTPPlainRTP (the leg speaks
// RTP/AVP(F)). When both are pass-through nothing above changes; otherwise
// every RTP m-line is terminated, a pass-through leg counting as terminate.
//
// SDP: the a=crypto lines of a peer never reach the other leg. Toward a
// terminate leg the SBC's offer carries RTP/SAVP(F) and one line per suite
// (1 AES_CM_128_HMAC_SHA1_80, 2 AES_CM_128_HMAC_SHA1_32, 3
// AEAD_AES_128_GCM, 4 AES_256_CM_HMAC_SHA1_80, 5 AEAD_AES_256_GCM), each
// with its own random master key and salt, drawn per leg and stream when
// the stream is created and repeated by later offers; the answer's tag
// tells which one is used. A re-offer toward a leg lists the suite that
// leg used last first (AES_256_CM_HMAC_SHA1_32, not offered otherwise,
// then with tag 6), so a peer supporting that suite only can answer it.
// Answering a terminate leg, the SBC accepts the first line of its offer
// it supports (the five suites above, AES_256_CM_HMAC_SHA1_32; MKI and
// lifetime accepted; other key methods, several keys and session
// parameters other than WSH and KDR=0 are not) and answers with the same
// tag, suite and its own key, on the offer's transport (RFC 3264 section
// 6: best-effort SRTP, RTP/AVP with a=crypto as CUCM and Polycom offer
// it, is answered RTP/AVP with a=crypto). A terminate leg offering no
// usable line, or answering none of the SBC's, gets ErrNotAcceptable
// (488). Toward a plain leg the SBC sends RTP/AVP(F) without a=crypto. DTLS-SRTP attributes are
// dropped on terminated streams (DTLS is not terminated).
//
// Keys: each leg has a remote context, which decrypts what the side sends,
// and a local one, which encrypts what it is sent (pion/srtp; replay
// protection with a 64-packet window on remote contexts). Contexts are
// built by the signalling, outside the relay, and published through
// atomic pointers; readers load them once per batch. The first keys of a
// stream are installed as soon as they are known (early media); changed
// keys (re-INVITE) when the answer is processed (ProvisionalAnswer or
// Answer). The offerer keeps its old key until the answer reaches it
// (RFC 4568 section 7.1.4), so a new decrypt context keeps the one it
// replaces: a packet the new key does not authenticate is tried with the
// old one, until the first packet authenticates with the new key, which
// retires the old one (RTP and SRTCP each); a re-key loses no packet. A
// new context also takes over the rollover counter of each SSRC (up to 4)
// from the one it replaces, as RFC 3711 and libsrtp's srtp_update do: for
// decryption the first packet of an SSRC is tried with the old context's
// ROC, then ROC+1 (the re-key crossed a wrap), then 0 (peers that reset
// the ROC with the key), and the first that authenticates is kept; for
// encryption the old context encrypts a copy of the first packet of the
// SSRC, which yields the exact ROC. Trial decryptions go to a per-reader
// scratch buffer, and the context that authenticated the sender's last
// packet is tried first (pion allocates the error of a failed AEAD open),
// so no packet allocates (TestRekeyTransitionZeroAllocs). A re-offer repeating the same key
// keeps the context, its rollover counter and replay window. The
// RTP context of a direction is used by one reader goroutine only; RTCP,
// which may arrive on the RTP port (RFC 5761, packet types 192-223) or on
// the RTCP port, goes through a mutex-guarded context.
//
// Relay: the reader decrypts in place (RTP or SRTCP) with the sender's
// remote context, accounts the packet, then encrypts in place with the
// receiver's local context and sends it from the same buffer; each buffer
// has 64 bytes of headroom after the 2048 received, for the tag (up to 16
// bytes with GCM) and the SRTCP index. Nothing is allocated per packet.
// Packets failing authentication (or not parseable as (S)RTP/(S)RTCP) are
// dropped as auth, replays as replay, packets of a direction whose key is
// not negotiated yet as no_key; none is forwarded, counted as media or
// latched: only authentic packets move a latched destination.
// BenchmarkRelayTerminate and BenchmarkTerminateHop measure the cost.
//
// Key material never appears in logs, metrics or errors: srtpKey and the
// types holding keys format as "<redacted>", and SDP errors go through
// redact.
//
// # Statistics
//
// Readers parse the RTP header (left in clear by SRTP) to count packets,
// bytes, loss from sequence gaps (RFC 3550 A.1/A.3, extended sequence
// numbers), out-of-order packets and interarrival jitter (RFC 3550 A.8)
// with the clock rate of the payload type from a=rtpmap (default 8000 Hz
// for audio, 90000 Hz otherwise; telephone-event is left out). Sequence
// and jitter state is kept per SSRC, for up to 4 SSRCs per direction (RTX,
// FEC, simulcast on one m-line; beyond that the least recently seen one is
// replaced, its counts kept): Expected and Lost are summed over the SSRCs,
// the jitter is the largest of the SSRCs heard in the last 5 s. The state
// is a fixed array, allocated with a reader's first RTP packet. RTCP,
// muxed or not, is counted separately. Every counter has a single writer,
// the reader goroutine of its socket, which keeps its state in plain
// fields and publishes it with atomic stores once per batch; other
// goroutines only load. StreamStats.Degraded flags jitter above 30 ms,
// loss above 1 % or a MOS below 4.0 (Webex thresholds).
//
// Each direction of an audio stream gets an E-model (ITU-T G.107) R rating
// and MOS, from its loss, its jitter and the codec of the last SDP (Ie and
// Bpl from G.113 Appendix I; see mos.go). The relay does not read RTCP
// reports (SRTCP report blocks are encrypted in pass-through), so the
// one-way delay is DefaultOneWayDelayMs (20 ms) plus a jitter buffer of
// twice the jitter. StreamStats.RemoteA and RemoteB are where each side's
// RTP goes (signalled or learned). Receiver is the same accounting for an
// endpoint outside the relay (`edge-sbc call`).
//
// # Dead media
//
// One engine-wide ticker (every second, or Timeout/4 if shorter) scans the
// sessions: a session whose answered (committed by Answer: early media
// does not count), non-held RTP streams received no packet for
// Config.Timeout gets its OnTimeout called once. Only RTP streams count: a
// non-RTP stream (BFCP, other application m-lines, idle for most of a call
// and without a direction attribute) neither keeps a call alive nor makes
// it dead. Streams on hold pause the timer; when every RTP stream is on
// hold (music on hold beside an idle BFCP stream, say), the call is not
// timed out.
//
// # Kernel fast path
//
// With Config.Fastpath FastpathAuto, Start loads package fastpath's eBPF
// program (TCX ingress on the interfaces carrying BindAddr); if it cannot
// (kernel before 6.6, no CAP_BPF and CAP_NET_ADMIN, an IPv6 bind
// address, learning off), one log line says why and nothing else changes.
// Readers publish the source they learned and locked (sock.lock: address,
// SSRC and payload type of its last RTP packet, the sigGen it was learned
// under). At every watchdog tick a stream whose signalling is idle (no
// offer pending), which passes SRTP through, is answered and not on hold,
// and whose both sides' locked sources are current and are where the
// relay sends to, gets one flow per direction in the kernel (and per RTCP
// port when RTCP is not muxed and both RTCP sources are locked); the
// kernel then forwards, from the relay's port facing the other side, only
// datagrams of the locked source carrying the locked SSRC (or muxed
// RTCP), with the stream's DSCP; anything else reaches the sockets as
// before. The stream leaves the kernel (flows removed with their final
// counters; the next datagram reaches the socket, none is lost) when an
// Offer is staged (re-INVITE, UPDATE: holds and re-keys come this way),
// when a reader is about to latch a new destination, when a datagram from
// another source carries the locked SSRC (a NAT rebind candidate: the
// learner is told when the kernel last heard the locked source, so the
// silence rule holds, and the stream stays out for RebindSilence +
// LearnWindow), when it stops being eligible, and when it is closed.
//
// The kernel counts what it forwards as the readers do: packets and bytes,
// RTCP apart, RFC 3550 sequence runs (expected, lost, out of order) and
// A.8 jitter of the locked SSRC, and the last-seen time. The watchdog
// reads the counters every tick (the dead-media timer sees them);
// StreamStats adds them (and the finished kernel periods) to the readers'
// figures, sets Kernel and counts them in DirectionStats.KernelPackets;
// after a kernel period the readers start new sequence runs, so nothing
// is counted twice or as lost.
//
// # Concurrency and ownership
//
// Engine and Session methods are safe for concurrent use. Sockets belong
// to their stream, streams to their session: Session.Close (or a
// re-negotiation rejecting a stream) closes the sockets, which unblocks
// the readers, and waits for them before returning the ports to the pool.
// Engine.Close stops the watchdog and closes the remaining sessions. The
// package has no mutable package-level state.
//
// # DSCP
//
// Relay sockets carry IP_TOS (or IPV6_TCLASS) = DSCP<<2: Config.DSCPAudio
// for audio, DSCPVideo for video (main and content video, a=content:slides),
// DSCPApplication for application streams such as BFCP (floor control is
// call control: the signalling code point, CS3, by default). SetDSCP (an
// established connection) and DSCPControl (a socket before it connects)
// are the one way edge-sbc marks packets: the SIP layer uses them for its
// signalling sockets (CS3 = 24), and `edge-sbc check` to test the marking.
package media
