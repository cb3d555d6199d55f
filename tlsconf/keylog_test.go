package tlsconf

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestKeyLogBothDirections: a server and a client config built from Stores
// with a key log each write the same secrets of one connection, in NSS
// format, to files created 0600 and appended to.
func TestKeyLogBothDirections(t *testing.T) {
	p := newPKI(t)
	srv, cli := p.store(t, "sbc.example.net"), p.store(t, "client.example.org")
	dir := t.TempDir()
	srvPath, cliPath := filepath.Join(dir, "server.keys"), filepath.Join(dir, "client.keys")
	// An existing file keeps its lines and is made private.
	if err := os.WriteFile(cliPath, []byte("# earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srvLog, err := OpenKeyLog(srvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer srvLog.Close()
	cliLog, err := OpenKeyLog(cliPath)
	if err != nil {
		t.Fatal(err)
	}
	defer cliLog.Close()
	srv.SetKeyLog(srvLog)
	cli.SetKeyLog(cliLog)

	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cc := NewClientConfig(cli, "sbc.example.net", "", 0)
		cc.MaxVersion = v
		r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), cc)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("TLS %x handshake: server %v, client %v", v, r.serverErr, r.clientErr)
		}
	}
	for _, path := range []string{srvPath, cliPath} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
	}
	sl, cl := readLines(t, srvPath), readLines(t, cliPath)
	if cl[0] != "# earlier" {
		t.Fatalf("client key log was not appended to: first line %q", cl[0])
	}
	cl = cl[1:]
	labels := map[string]int{}
	for _, l := range sl {
		f := strings.Fields(l)
		if len(f) != 3 || len(f[1]) != 64 {
			t.Fatalf("not an NSS key log line: %q", l)
		}
		labels[f[0]]++
	}
	for _, want := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "CLIENT_RANDOM"} {
		if labels[want] != 1 {
			t.Errorf("%s lines: %d, want 1 (%v)", want, labels[want], labels)
		}
	}
	slices.Sort(sl)
	slices.Sort(cl)
	if !slices.Equal(sl, cl) {
		t.Fatalf("server and client logged different secrets:\n%s\n--\n%s", strings.Join(sl, "\n"), strings.Join(cl, "\n"))
	}
	if srvLog.Errors() != 0 || cliLog.Errors() != 0 {
		t.Fatalf("write errors: %d, %d", srvLog.Errors(), cliLog.Errors())
	}
}

// TestKeyLogNeverFailsHandshake: a key log that cannot write (closed)
// drops the lines and counts them; the handshake still succeeds.
func TestKeyLogNeverFailsHandshake(t *testing.T) {
	p := newPKI(t)
	srv, cli := p.store(t, "sbc.example.net"), p.store(t, "client.example.org")
	kl, err := OpenKeyLog(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kl.Close(); err != nil {
		t.Fatal(err)
	}
	srv.SetKeyLog(kl)
	r := handshake(t, NewServerConfig(srv, ClientAuthNone, 0), NewClientConfig(cli, "sbc.example.net", "", 0))
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	if kl.Errors() == 0 {
		t.Fatal("dropped key log lines not counted")
	}
}

func TestKeyLogOffByDefault(t *testing.T) {
	p := newPKI(t)
	s := p.store(t, "sbc.example.net")
	if w := NewClientConfig(s, "x.example", "", 0).KeyLogWriter; w != nil {
		t.Fatalf("KeyLogWriter = %v without SetKeyLog", w)
	}
	kl, err := OpenKeyLog(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	s.SetKeyLog(kl)
	s.SetKeyLog(nil)
	if w := NewClientConfig(s, "x.example", "", 0).KeyLogWriter; w != nil {
		t.Fatalf("KeyLogWriter = %v after SetKeyLog(nil)", w)
	}
	if _, err := OpenKeyLog(filepath.Join(t.TempDir(), "missing", "keys")); err == nil {
		t.Fatal("OpenKeyLog in a missing directory succeeded")
	}
}
