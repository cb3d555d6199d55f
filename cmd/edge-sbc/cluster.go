package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
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
