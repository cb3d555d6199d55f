package main

import (
	"time"

	"github.com/rs/zerolog"
)

// With GOGC=400 (defaultGCPercent) the heap of a busy SBC grows to several
// times what is live, and Go's background scavenger gives the pages back
// to the system slowly: after a burst an idle SBC would keep tens of MB
// it does not use. releaseWhenIdle returns them once no call has been in
// progress for idleRelease after there were some: one collection and one
// release per busy period, nothing while calls run.
const (
	idleRelease     = 30 * time.Second
	idleReleaseTick = 5 * time.Second
)

// releaseWhenIdle runs until the returned stop is called (it waits for
// the goroutine). active reports the calls in progress (B2BUA.ActiveCalls);
// release returns free memory to the system (debug.FreeOSMemory).
func releaseWhenIdle(active func() int, release func(), tick, idle time.Duration, log zerolog.Logger) (stop func()) {
	busy := false
	var idleSince time.Time
	return every(tick, func(now time.Time) {
		switch {
		case active() > 0:
			busy, idleSince = true, time.Time{}
		case !busy:
		case idleSince.IsZero():
			idleSince = now
		case now.Sub(idleSince) >= idle:
			release()
			busy = false
			log.Debug().Msg("no call for a while: free memory returned to the system")
		}
	})
}
