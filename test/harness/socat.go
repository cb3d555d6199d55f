package harness

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// TLSFiles names PEM files: Cert is the leaf certificate (optionally followed
// by its chain), Key its private key and CA the trust anchor(s) used to
// verify the peer.
type TLSFiles struct{ Cert, Key, CA string }

// socatEscape escapes characters that are special inside a socat address.
func socatEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`, `!`, `\!`, `'`, `\'`, `"`, `\"`)
	return r.Replace(s)
}

// StartTLSClientProxy starts
//
//	socat TCP-LISTEN:<port>,bind=127.0.0.1,fork,reuseaddr \
//	      OPENSSL:<target>,cafile=<CA>,verify=1[,cert=<Cert>,key=<Key>][,commonname=<n>,snihost=<n> | ,commonname=,no-sni=1]
//
// target is "host:port" of the TLS server (e.g. the SBC, "127.0.0.1:5062").
// With clientCert false (or zero Cert/Key) no client certificate is
// presented. serverName is the name verified in the server certificate and
// sent as SNI; "" disables the name check (the chain is still verified
// against files.CA) and SNI. Every TCP connection accepted gets its own TLS
// connection. It returns the local TCP port; the proxy is stopped by
// t.Cleanup.
func StartTLSClientProxy(t testing.TB, target string, files TLSFiles, clientCert bool, serverName string) int {
	t.Helper()
	LookTools(t)
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("harness: StartTLSClientProxy: bad target %q: %v", target, err)
	}
	opts := []string{"OPENSSL:" + host + ":" + port, "verify=1"}
	if files.CA != "" {
		opts = append(opts, "cafile="+socatEscape(files.CA))
	} else {
		t.Fatalf("harness: StartTLSClientProxy: files.CA is required to verify the server")
	}
	if clientCert && files.Cert != "" && files.Key != "" {
		opts = append(opts, "cert="+socatEscape(files.Cert), "key="+socatEscape(files.Key))
	}
	if serverName != "" {
		opts = append(opts, "commonname="+socatEscape(serverName), "snihost="+socatEscape(serverName))
	} else {
		// socat 1.7.4: an empty commonname disables the host name check;
		// SNI must then be switched off explicitly or socat fails to set "".
		opts = append(opts, "commonname=", "no-sni=1")
	}
	lport := FreePort(t)
	listen := "TCP-LISTEN:" + strconv.Itoa(lport) + ",bind=" + LoopbackIP + ",fork,reuseaddr"
	startSocat(t, "socat-client", lport, listen, strings.Join(opts, ","))
	return lport
}

// StartTLSServerProxy starts
//
//	socat OPENSSL-LISTEN:<tlsPort>,bind=127.0.0.1,fork,reuseaddr,cert=<Cert>,key=<Key>,cafile=<CA>,verify=<0|1> \
//	      TCP:127.0.0.1:<sippPort>
//
// on a free port and returns that TLS port. With requireClientCert the peer
// must present a certificate signed by files.CA. Every accepted TLS
// connection gets its own TCP connection to sipp, so sipp (in -t t1/tn mode)
// answers and sends in-dialog requests over it. Stopped by t.Cleanup.
func StartTLSServerProxy(t testing.TB, files TLSFiles, sippPort int, requireClientCert bool) int {
	t.Helper()
	return StartTLSServerProxyOn(t, 0, files, sippPort, requireClientCert)
}

// StartTLSServerProxyOn is StartTLSServerProxy on a given TLS port (0 = free).
func StartTLSServerProxyOn(t testing.TB, tlsPort int, files TLSFiles, sippPort int, requireClientCert bool) int {
	t.Helper()
	LookTools(t)
	if files.Cert == "" || files.Key == "" {
		t.Fatalf("harness: StartTLSServerProxy: Cert and Key are required")
	}
	if tlsPort == 0 {
		tlsPort = FreePort(t)
	}
	verify := "0"
	if requireClientCert {
		verify = "1"
	}
	listen := []string{
		"OPENSSL-LISTEN:" + strconv.Itoa(tlsPort),
		"bind=" + LoopbackIP, "fork", "reuseaddr",
		"cert=" + socatEscape(files.Cert), "key=" + socatEscape(files.Key),
		"verify=" + verify,
	}
	if files.CA != "" {
		listen = append(listen, "cafile="+socatEscape(files.CA))
	} else if requireClientCert {
		t.Fatalf("harness: StartTLSServerProxy: files.CA is required to verify client certificates")
	}
	startSocat(t, "socat-server", tlsPort, strings.Join(listen, ","),
		"TCP:"+LoopbackIP+":"+strconv.Itoa(sippPort))
	return tlsPort
}

func startSocat(t testing.TB, name string, port int, addr1, addr2 string) {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, name+".log")
	args := []string{"-d", "-d", "-lh", addr1, addr2}
	p, err := proc.Start(proc.Options{Path: "socat", Args: args, Dir: dir, Log: logPath})
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, 2*time.Second)
		if t.Failed() {
			t.Logf("harness: %s (port %d) log:\n%s", name, port, p.LogTail(4000))
		}
	})
	if err := proc.WaitListening(port, 5*time.Second, p); err != nil {
		t.Fatalf("harness: socat %s %s: %v\n%s", addr1, addr2, err, readFile(logPath))
	}
	t.Logf("harness: %s on %s:%d: socat %s", name, LoopbackIP, port, strings.Join(args, " "))
}
