package media

import "testing"

// TestHasRoom: a new call's streams fit while the sockets of the pairs in
// use (two per pair) and theirs (four per stream) stay within the
// descriptor limit less its reserve (an eighth, at least 512); the
// sockets the pool keeps open do not count (they are shed first).
func TestHasRoom(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.PortMin, c.PortMax = 20000, 29999 })
	e.fdMax = 1000 // room for relay sockets: 1000 - 512 = 488
	if !e.HasRoom(1) {
		t.Fatal("no room with nothing in use")
	}
	for range 242 {
		if _, ok := e.pool.get(); !ok {
			t.Fatal("pool exhausted")
		}
	}
	if !e.HasRoom(1) { // 2*242 + 4 = 488
		t.Error("no room for one stream with 484 sockets in use of 488")
	}
	if e.HasRoom(2) { // 2*242 + 8 = 492
		t.Error("room for two streams with 484 sockets in use of 488")
	}
	if _, ok := e.pool.get(); !ok {
		t.Fatal("pool exhausted")
	}
	if e.HasRoom(1) {
		t.Error("room for one stream with 486 sockets in use of 488")
	}
	if got := fdReserve(65536); got != 8192 {
		t.Errorf("fdReserve(65536) = %d, want an eighth", got)
	}
	if got := fdReserve(100); got != 100 {
		t.Errorf("fdReserve(100) = %d, want all of it (below the 512 floor)", got)
	}
}
