// Package cluster lets two (or more) edge-sbc nodes act as one service
// through one Redis: cluster-wide call limits (Admitter) and the encrypted
// state of answered calls, so that another node can carry a call on when
// the node that had it is lost (StateStore).
//
// One Cluster per process owns the Redis client, a heartbeat goroutine and
// the watchers; Open builds it (no I/O), Start sends the first heartbeat and
// starts the goroutine, Close stops everything and waits. Every Redis
// operation is bounded by Options.Timeout (200 ms). When Redis cannot be
// reached, operations return an error wrapping ErrUnavailable at once (no
// I/O while the heartbeat has not seen Redis again): the caller applies its
// local limits instead. The outage is logged once, and once when Redis is
// back; Up reports it for the edge_sbc_cluster_redis_up gauge. What this
// node did meanwhile (calls admitted by local limits and recorded with
// Adopt, calls released, states written) is kept in memory and rewritten to
// Redis when it is back, as it is when Redis restarted empty.
//
// # Redis keys
//
// With the default prefix "edge-sbc:" (Options.Prefix):
//
//	edge-sbc:nodes               set     node ids that have records
//	edge-sbc:node:<id>:alive     string  the node's heartbeat (its run's random epoch), PX 6 s, set every 2 s
//	edge-sbc:node:<id>:calls     hash    call id -> JSON list of the count fields it is in besides "*"
//	edge-sbc:node:<id>:count     hash    "*" -> the node's calls, "u" -> those from unauthenticated peers,
//	                                     "t:<trunk>" -> those on the trunk; "_epoch"
//	edge-sbc:cps:*               hash    global new-call token bucket {tok, ts}, expires when full again
//	edge-sbc:cps:u               hash    the unauthenticated peers' token bucket
//	edge-sbc:cps:t:<trunk>       hash    the trunk's token bucket
//	edge-sbc:state:<call id>     string  sealed call state (AES-256-GCM), PX = the caller's ttl
//	edge-sbc:state-events        channel 'P' put / 'D' delete notices, with the sealed state
//
// A node's calls count only while its alive key exists: a node that stops
// (SIGKILL, power, network) stops counting 6 s after its last heartbeat at
// the latest. Its calls and count hashes expire 10 minutes after its last
// heartbeat (they are refreshed with it), and the node is then dropped
// from the nodes set. A node that hands its calls over (shutdown.handoff)
// deletes its alive key and hashes itself (Leave) and so stops counting
// at once; LiveNodes tells it first whether another node is there.
//
// # Operations per call
//
// Admit: one EVALSHA (check every limit over the live nodes, then count the
// call and take the rate tokens, atomically). Release: one EVALSHA.
// StateStore.Put (on answer and after each renegotiation): one EVALSHA (SET
// with PX and PUBLISH). StateStore.Delete: one EVALSHA (DEL and PUBLISH).
// So a call answered once costs four round trips, plus one per
// renegotiation; the heartbeat costs one EVALSHA per node every 2 s.
//
// # Secrets
//
// The state key is used to build the AEAD and not kept otherwise; call
// state reaches Redis only sealed: AES-256-GCM with a random 96-bit nonce
// per write and the writing node's id and the call id as additional data,
// so a value moved to another call's key, or claimed by another node, does
// not open. The Redis password and the key are never logged; Options
// prints neither.
package cluster
