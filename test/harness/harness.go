// Package harness drives sipp (SIP traffic generator) and socat (TLS
// wrapping) for end-to-end tests of edge-sbc.
//
// sipp 3.6.1 as shipped by Debian has no TLS support, so every sipp instance
// talks plain TCP to a local socat that does the TLS:
//
//	sipp UAC --TCP--> socat TCP-LISTEN -> OPENSSL --TLS--> SBC
//	SBC --TLS--> socat OPENSSL-LISTEN -> TCP --> sipp UAS
//
// The scenarios in test/sipp write TLS Vias and sips: URIs themselves. Only
// loopback addresses are used.
package harness

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// LoopbackIP is the only address the harness binds to or dials.
const LoopbackIP = proc.Loopback

// LookTools fails the test with an install hint when sipp or socat is missing.
func LookTools(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"sipp", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("harness: %s not found in PATH; install with: apt-get install -y sip-tester socat openssl",
			strings.Join(missing, ", "))
	}
}

var (
	portMu   sync.Mutex
	usedPort = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that is currently free and has
// not been handed out before by this process.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		l, err := net.Listen("tcp", net.JoinHostPort(LoopbackIP, "0"))
		if err != nil {
			t.Fatalf("harness: FreePort: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		portMu.Lock()
		dup := usedPort[p]
		usedPort[p] = true
		portMu.Unlock()
		if !dup {
			return p
		}
	}
	t.Fatalf("harness: FreePort: no unused port found")
	return 0
}

// freeUDPRange returns a UDP port p such that p..p+n-1 are all free on
// 127.0.0.1 (sipp binds its media port and media port+2).
func freeUDPRange(t testing.TB, n int) int {
	t.Helper()
	for range 200 {
		first, err := net.ListenPacket("udp", net.JoinHostPort(LoopbackIP, "0"))
		if err != nil {
			t.Fatalf("harness: UDP port: %v", err)
		}
		p := first.LocalAddr().(*net.UDPAddr).Port
		_ = first.Close()
		if p%2 == 1 || p+n > 65535 {
			continue
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			c, err := net.ListenPacket("udp", net.JoinHostPort(LoopbackIP, strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				break
			}
			_ = c.Close()
		}
		portMu.Lock()
		for i := 0; i < n && ok; i++ {
			if usedPort[-(p + i)] {
				ok = false
			}
		}
		if ok {
			for i := range n {
				usedPort[-(p + i)] = true
			}
		}
		portMu.Unlock()
		if ok {
			return p
		}
	}
	t.Fatalf("harness: no free UDP port range")
	return 0
}

// ScenarioPath returns the absolute path of test/sipp/<name>. Absolute names
// are returned unchanged.
func ScenarioPath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("..", "sipp", name)
	}
	return filepath.Join(filepath.Dir(file), "..", "sipp", name)
}

// readFile returns the file content or "" when it does not exist.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}
