package cluster

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
)

// RedisLog carries go-redis's own messages to a zerolog logger at debug
// level. Without it go-redis prints them on stderr, one per failed dial
// (twice a second while Redis is unreachable), besides this package's
// single line. go-redis has one logger per process, so the program installs
// it once, in main: redis.SetLogger(cluster.RedisLog{Log: log}).
type RedisLog struct{ Log zerolog.Logger }

// Printf implements go-redis's logger.
func (l RedisLog) Printf(_ context.Context, format string, v ...any) {
	l.Log.Debug().Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}
