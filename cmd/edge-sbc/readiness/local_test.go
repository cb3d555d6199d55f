package readiness

import (
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

func TestListenInUseByOtherProcess(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	rs := run(t, f.config(t, spec{listenAddr: addr}))
	expect(t, rs, "local.listen/"+addr, LevelMust, VerdictFail, "in use by another process")
	if !Failed(rs) {
		t.Error("run did not fail")
	}
}

func TestListenInUseBySBC(t *testing.T) {
	f := newFixture(t)
	// A TLS listener presenting our own certificate stands in for a
	// running edge-sbc, with mutual TLS like its 5062 listener.
	store, err := tlsconf.LoadStore(f.ourLeaf().Cert, f.ourLeaf().Key, f.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconf.NewServerConfig(store, tlsconf.ClientAuthRequired, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	addr := ln.Addr().String()
	rs := run(t, f.config(t, spec{listenAddr: addr, clientAuth: "required"}))
	expect(t, rs, "local.listen/"+addr, LevelMust, VerdictWarn, "in use — is edge-sbc already running?")
	if Failed(rs) {
		t.Errorf("run failed:\n%s", dump(rs))
	}
}

func TestListenNotLocalAddress(t *testing.T) {
	f := newFixture(t)
	addr := "192.0.2.1:5061" // TEST-NET-1: not on this host
	rs := run(t, f.config(t, spec{listenAddr: addr}))
	expect(t, rs, "local.listen/"+addr, LevelMust, VerdictFail, "not configured on this host")
}

func TestMediaPortInUse(t *testing.T) {
	f := newFixture(t)
	lo, _, _ := strings.Cut(f.mediaRange, "-")
	pc, err := net.ListenPacket("udp", "127.0.0.1:"+lo)
	if err != nil {
		t.Skipf("cannot hold the first media port: %v", err)
	}
	defer pc.Close()
	rs := run(t, f.config(t, spec{}))
	expect(t, rs, "local.media_ports/"+f.mediaRange, LevelMust, VerdictFail, "port "+lo)
}

func TestSamplePorts(t *testing.T) {
	for _, tc := range []struct {
		lo, hi int
		want   []int
	}{
		{36000, 59999, []int{36000, 47998, 59998}},
		{36001, 36010, []int{36002, 36004, 36008}},
		{2000, 2003, []int{2000, 2002}},
		{2000, 2001, []int{2000}},
		{2001, 2002, nil},
	} {
		got := samplePorts(tc.lo, tc.hi)
		if !slices.Equal(got, tc.want) {
			t.Errorf("samplePorts(%d, %d) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
		for _, p := range got {
			if p%2 != 0 || p < tc.lo || p+1 > tc.hi {
				t.Errorf("samplePorts(%d, %d): pair %d/%d outside the range or odd", tc.lo, tc.hi, p, p+1)
			}
		}
	}
}

func TestDSCPReadBack(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	c.Media.DSCP.Audio, c.Media.DSCP.Video = 46, 34
	r := checkDSCPMarking(c)
	if r.Verdict != VerdictOK || !strings.Contains(r.Evidence, "audio 46") {
		t.Errorf("got %+v", r)
	}
	c.Media.Bind = "192.0.2.1"
	if r := checkDSCPMarking(c); r.Verdict != VerdictWarn || r.Level != LevelShould {
		t.Errorf("bind on a foreign address: got %+v", r)
	}
}
