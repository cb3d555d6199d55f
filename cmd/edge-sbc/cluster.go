package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

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
// carry (SIGUSR1: keepalived's notify_master once the service address is
// here). Without a cluster section it says so and does nothing. A standby
// node takes calls over only this way; an active one too, when told.
func (s *sbc) takeover() {
	if s.cl == nil {
		s.log.Warn().Msg("SIGUSR1: takeover asked, but there is no cluster section: ignored")
		return
	}
	// The calls' media is on the service address: without it here, a
	// takeover would only take calls from the node that holds it
	// (binding it proves nothing with net.ipv4.ip_nonlocal_bind).
	if bind := s.eng.Config().BindAddr; !bind.IsUnspecified() {
		if ok, err := hasAddress(bind); err != nil || !ok {
			s.log.Warn().Err(err).Stringer("media.bind", bind).Msg("SIGUSR1: takeover refused: the service address is not on an interface of this node")
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
	ev.Err(err).Str("role", s.cfg.Cluster.Role).Int("taken", res.Taken).Int("skipped", res.Skipped).
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
