//go:build !linux

package tlsconf

import "net"

// DirectIO returns c: the raw-system-call reads and writes of the Linux
// build (directio_linux.go) are not carried on other systems.
func DirectIO(c net.Conn) net.Conn { return c }
