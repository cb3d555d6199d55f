//go:build !unix

package media

import (
	"errors"
	"syscall"
)

// errNoDSCP: this platform has no IP_TOS / IPV6_TCLASS socket option.
var errNoDSCP = errors.New("media: DSCP marking is not supported on this platform")

func setTOS(syscall.RawConn, bool, int) error { return errNoDSCP }

func getTOS(syscall.RawConn, bool) (int, error) { return 0, errNoDSCP }
