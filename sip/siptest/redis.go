package siptest

import (
	"testing"

	"github.com/edge-sbc/edge-sbc/sip/cluster/redistest"
)

// Redis is a redis-server of one test (redistest.Server): a random port,
// a temporary directory, no persistence. It is killed when the test ends.
type Redis = redistest.Server

// StartRedis starts a redis-server on 127.0.0.1 for t, or skips t when
// none is installed (make test-deps installs Debian's redis-server).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return redistest.Start(t, redistest.Options{})
}

// StartRedisOn is StartRedis listening on host (an IPv4 address of this
// host, or of the test's network namespace).
func StartRedisOn(t testing.TB, host string) *Redis {
	t.Helper()
	return redistest.Start(t, redistest.Options{Host: host})
}
