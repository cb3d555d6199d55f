//go:build unix

package media

import "syscall"

// fdLimit is the process's file descriptor limit (the soft limit, which
// Go raises to the hard limit at start).
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 1 << 30
	}
	return int(r.Cur)
}
