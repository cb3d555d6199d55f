package cluster

import (
	"context"
	"fmt"
	"slices"
)

// LiveNodes returns the ids of the other nodes of the service whose
// heartbeat is in Redis now (sorted): those that could take this node's
// calls over. One SMEMBERS and one EXISTS per node, bounded by
// Options.Timeout each. An error wraps ErrUnavailable when Redis cannot be
// used.
func (c *Cluster) LiveNodes(ctx context.Context) ([]string, error) {
	if err := c.gate(); err != nil {
		return nil, err
	}
	octx, cancel := c.opContext(ctx)
	ids, err := c.rdb.SMembers(octx, c.k.nodes()).Result()
	cancel()
	if err != nil {
		return nil, c.failed(ctx, fmt.Errorf("smembers: %w", err))
	}
	var live []string
	for _, id := range ids {
		if id == c.o.NodeID {
			continue
		}
		octx, cancel := c.opContext(ctx)
		n, err := c.rdb.Exists(octx, c.k.alive(id)).Result()
		cancel()
		if err != nil {
			return nil, c.failed(ctx, fmt.Errorf("exists: %w", err))
		}
		if n == 1 {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live, nil
}

// Leave removes this node from the service at once, as if its heartbeat
// had expired: its alive key and its calls and count hashes are deleted
// (so the calls it counted stop counting now, and a node that takes them
// over with Admitter.Adopt makes each count once), and the heartbeat
// writes nothing more. The call states in Redis are left as they are: the
// node that takes the calls over reads them. Leave is for a node that
// hands its calls over and stops (shutdown.handoff); after it the Cluster
// admits, releases and writes nothing (ErrClosed), and Close is still to
// be called. One transaction, bounded by Options.Timeout. When it fails
// (the error wraps ErrUnavailable) the heartbeat stops all the same: the
// node's calls stop counting when its alive key expires, as after a kill.
func (c *Cluster) Leave(ctx context.Context) error {
	c.beatMu.Lock()
	defer c.beatMu.Unlock()
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if c.left.Swap(true) {
		return nil
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	n := c.o.NodeID
	octx, cancel := c.opContext(ctx)
	defer cancel()
	pipe := c.rdb.TxPipeline()
	pipe.Del(octx, c.k.alive(n), c.k.calls(n), c.k.count(n))
	pipe.SRem(octx, c.k.nodes(), n)
	if _, err := pipe.Exec(octx); err != nil {
		return fmt.Errorf("%w: leave: %w", ErrUnavailable, err)
	}
	c.log.Info().Msg("cluster: left (heartbeat and call counts removed)")
	return nil
}
