package tlsconf

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

// pki is a dev PKI in a temp dir with a server leaf "sbc.example.net"
// (+127.0.0.1) and a client leaf "client.example.org".
type pki struct {
	dir   string
	files DevFiles
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	f, err := WriteDevPKI(dir, []string{"sbc.example.net", "client.example.org"}, loopback)
	if err != nil {
		t.Fatalf("WriteDevPKI: %v", err)
	}
	return pki{dir: dir, files: f}
}

func (p pki) store(t *testing.T, name string) *Store {
	t.Helper()
	lf, ok := p.files.Leaves[name]
	if !ok {
		t.Fatalf("no leaf %q", name)
	}
	return p.storeFor(t, lf)
}

func (p pki) storeFor(t *testing.T, lf LeafFiles) *Store {
	t.Helper()
	s, err := LoadStore(lf.Cert, lf.Key, p.files.CA)
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	return s
}

func (p pki) issue(t *testing.T, opt LeafOptions) LeafFiles {
	t.Helper()
	lf, err := IssueDevLeaf(p.dir, opt)
	if err != nil {
		t.Fatalf("IssueDevLeaf: %v", err)
	}
	return lf
}

type hsResult struct {
	serverErr, clientErr     error
	serverState, clientState tls.ConnectionState
	sni                      string // ClientHelloInfo.ServerName seen by the server
	sawHello                 bool
}

// handshake runs one TLS handshake over a real loopback TCP connection.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) hsResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var res hsResult
	helloCh := make(chan string, 1)
	sc := serverCfg.Clone()
	inner := sc.GetConfigForClient
	sc.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		helloCh <- h.ServerName
		if inner != nil {
			return inner(h)
		}
		return nil, nil
	}

	type srvOut struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan srvOut, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- srvOut{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, sc)
		err = tc.HandshakeContext(ctx)
		if err == nil {
			// Make sure a TLS 1.3 client learns about a late rejection and the
			// server sees the client's post-handshake alert, if any.
			_, err = tc.Write([]byte("ok"))
		}
		done <- srvOut{err: err, state: tc.ConnectionState()}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, clientCfg)
	res.clientErr = tc.HandshakeContext(ctx)
	if res.clientErr == nil {
		buf := make([]byte, 2)
		_, res.clientErr = tc.Read(buf)
	}
	res.clientState = tc.ConnectionState()
	_ = tc.Close()

	out := <-done
	res.serverErr, res.serverState = out.err, out.state
	select {
	case res.sni = <-helloCh:
		res.sawHello = true
	default:
	}
	return res
}

func wantReason(t *testing.T, side string, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: handshake succeeded, want failure %q", side, want)
	}
	got, detail := Classify(err)
	if got != want {
		t.Fatalf("%s: Classify(%v) = %q (%s), want %q", side, err, got, detail, want)
	}
	t.Logf("%s: %s: %s", side, got, detail)
}

func ok(t *testing.T, r hsResult) {
	t.Helper()
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("handshake failed: client=%v server=%v", r.clientErr, r.serverErr)
	}
}
