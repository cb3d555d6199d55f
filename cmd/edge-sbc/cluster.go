package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
)

// clusterStartTimeout bounds the first heartbeat at start: an unreachable
// Redis does not stop the SBC (it runs on local limits until Redis answers).
const clusterStartTimeout = 2 * time.Second

// openCluster builds this node's cluster membership from the cluster
// section (nil without one): it reads the state key and the Redis TLS
// files and opens nothing; the caller starts it. It routes go-redis's own
// log to log (go-redis has one logger per process) and registers
// edge_sbc_cluster_redis_up on reg.
func openCluster(cfg *config.Config, reg prometheus.Registerer, log zerolog.Logger) (*cluster.Cluster, error) {
	if cfg.Cluster == nil {
		return nil, nil
	}
	clog := log.With().Str("part", "cluster").Logger()
	o, err := cluster.FromConfig(cfg.Cluster, clog)
	if err != nil {
		return nil, err
	}
	cl, err := cluster.Open(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	redis.SetLogger(cluster.RedisLog{Log: clog})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edge_sbc_cluster_redis_up",
		Help: "1 while Redis answers this node (cluster-wide limits and call state apply); 0 while the node runs on its local limits.",
	}, func() float64 {
		if cl.Up() {
			return 1
		}
		return 0
	}))
	return cl, nil
}

// startCluster sends the first heartbeat and starts the cluster's
// goroutines.
func startCluster(cl *cluster.Cluster, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	if err := cl.Start(ctx); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	log.Info().Str("node_id", cl.NodeID()).Bool("redis_up", cl.Up()).Msg("cluster: joined")
	return nil
}

// takeoverTimeout bounds one takeover (loading the states, adopting the
// calls' slots); the calls' dials toward the peers go on after it.
const takeoverTimeout = 15 * time.Second

// takeover carries on the calls of the cluster that this node does not
// carry, on SIGUSR1 (keepalived's notify_master once the service address
// is here) or when the service address appears on an interface
// (watchAddress); trigger names which in the log. Both run in the main
// loop, one at a time; a second takeover skips the calls the first took.
// Without a cluster section it says so and does nothing.
func (s *sbc) takeover(trigger string) {
	if s.cl == nil {
		s.log.Warn().Msg(trigger + ": takeover asked, but there is no cluster section: ignored")
		return
	}
	// The calls' media is on the service address: without it here, a
	// takeover would only take calls from the node that holds it
	// (binding it proves nothing with net.ipv4.ip_nonlocal_bind).
	if bind := s.eng.Config().BindAddr; !bind.IsUnspecified() {
		if ok, err := hasAddress(bind); err != nil || !ok {
			s.log.Warn().Err(err).Stringer("media.bind", bind).Msg(trigger + ": takeover refused: the service address is not on an interface of this node")
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), takeoverTimeout)
	defer cancel()
	res, err := takeOverCalls(ctx, s.cl.StateStore(), s.b2b)
	ev := s.log.Info()
	if err != nil || len(res.Failed) > 0 {
		ev = s.log.Warn()
	}
	ev.Err(err).Str("trigger", trigger).Str("role", s.cfg.Cluster.Role).Int("taken", res.Taken).Int("skipped", res.Skipped).
		Int("failed", len(res.Failed)).Msg("cluster: takeover")
}

// stateLoader is what a takeover reads the calls' states from
// (*cluster.StateStore).
type stateLoader interface {
	Load(ctx context.Context) (map[string][]byte, error)
}

// callTaker is what a takeover rebuilds calls in (*sip.B2BUA).
type callTaker interface {
	Takeover(ctx context.Context, states map[string][]byte) sip.TakeoverResult
}

// takeOverCalls loads every call state of the cluster and carries on
// those this node does not carry. States that do not open with this
// node's key are reported in err (wrapping cluster.ErrSealed) and left
// out; the others are taken over.
func takeOverCalls(ctx context.Context, st stateLoader, b callTaker) (sip.TakeoverResult, error) {
	states, err := st.Load(ctx)
	if err != nil && !errors.Is(err, cluster.ErrSealed) {
		return sip.TakeoverResult{}, fmt.Errorf("cluster: load call states: %w", err)
	}
	return b.Takeover(ctx, states), err
}

// hasAddress reports whether addr is assigned to an interface of this
// host (of its network namespace).
func hasAddress(addr netip.Addr) (bool, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return false, fmt.Errorf("interface addresses: %w", err)
	}
	addr = addr.Unmap()
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
				return true, nil
			}
		}
	}
	return false, nil
}

// addressPoll is how often a cluster node looks for the service address
// on its interfaces (watchAddress).
const addressPoll = 200 * time.Millisecond

// watchAddress looks for addr on this host's interfaces every poll, on a
// goroutine that stop ends (and waits for: every), and
// sends on the returned channel (one slot: a trigger not yet handled is
// not doubled) each time addr appears: absent at one look, present at
// the next. Present at the first look is no trigger: the node may be the
// first one up, with nothing to take over (SIGUSR1 still takes over). A
// failing look counts as absent and is logged once per outage.
func watchAddress(addr netip.Addr, poll time.Duration, has func(netip.Addr) (bool, error), log zerolog.Logger) (appeared <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	present := func(failing *bool) bool {
		ok, err := has(addr)
		if err != nil {
			if !*failing {
				log.Warn().Err(err).Stringer("media.bind", addr).Msg("cluster: the service address cannot be looked for")
			}
			*failing = true
			return false
		}
		*failing = false
		return ok
	}
	failing := false
	was := present(&failing)
	stop = every(poll, func(time.Time) {
		now := present(&failing)
		if now && !was {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		was = now
	})
	return ch, stop
}

// handoffCheckTimeout bounds the look for another live node at shutdown;
// handoffTimeout the writes of the calls' states.
const (
	handoffCheckTimeout = time.Second
	handoffTimeout      = 5 * time.Second
)

// handoff hands the answered calls over to another node of the cluster
// instead of draining (shutdown.handoff), and reports whether it did:
// with no cluster section, handoff false, Redis unreachable or no other
// live node, it does nothing (the caller drains). Otherwise new calls are
// refused, every confirmed call's state is written and the call let go
// without BYE nor CDR (sip.B2BUA.Handoff), the calls left (in setup, or
// whose state could not be written) are ended as a shutdown ends them,
// and the node leaves the cluster (its heartbeat and counts removed at
// once: the taker's Adopt counts each call once).
func (s *sbc) handoff(stop os.Signal) bool {
	if s.cl == nil || !s.b2b.Conf().Shutdown.Handoff {
		return false
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), handoffCheckTimeout)
	live, err := s.cl.LiveNodes(ctx)
	cancel()
	switch {
	case err != nil:
		s.log.Warn().Err(err).Str("signal", stop.String()).Msg("cluster: no hand-over (Redis cannot be used): draining")
		return false
	case len(live) == 0:
		s.log.Warn().Str("signal", stop.String()).Msg("cluster: no hand-over (no other live node): draining")
		return false
	}
	notify(s.log, daemon.SdNotifyStopping)
	s.log.Info().Str("signal", stop.String()).Int("calls", s.b2b.ActiveCalls()).Strs("nodes", live).
		Msg("shutting down: handing the answered calls over to the cluster (shutdown.handoff)")
	s.b2b.Drain()
	hctx, hcancel := context.WithTimeout(context.Background(), handoffTimeout)
	res := s.b2b.Handoff(hctx)
	hcancel()
	for _, err := range res.Failed {
		s.log.Warn().Err(err).Msg("cluster: call not handed over: ended with BYE")
	}
	if res.Left > 0 {
		s.b2b.HangupAll("shutdown")
	}
	lctx, lcancel := context.WithTimeout(context.Background(), handoffCheckTimeout)
	lerr := s.cl.Leave(lctx)
	lcancel()
	ev := s.log.Info()
	if lerr != nil || len(res.Failed) > 0 {
		ev = s.log.Warn()
	}
	ev.Err(lerr).Int("handed_off", res.HandedOff).Int("ended", res.Left).Int("failed", len(res.Failed)).
		Strs("nodes", live).Dur("took", time.Since(t0)).Msg("cluster: handed off")
	return true
}
