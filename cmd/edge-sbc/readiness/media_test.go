package readiness

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func TestMediaLearningOffWarns(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	for _, tc := range []struct {
		learning string
		strict   bool
		verdict  string
		evidence string
	}{
		{"heuristic", false, VerdictOK, "heuristic"},
		{"strict", false, VerdictOK, "strict"},
		{"heuristic", true, VerdictOK, "strict"},
		{"off", false, VerdictWarn, "media.learning: off lets anyone who guesses a relay port take over a stream"},
	} {
		c.Media.Learning, c.Media.StrictSource = tc.learning, tc.strict
		expect(t, []Result{checkMediaLearning(c)}, "local.media_learning", LevelShould, tc.verdict, tc.evidence)
	}
}

func TestMediaBindNotLocal(t *testing.T) {
	// TEST-NET-1 is never on the host, unless it binds foreign addresses.
	if l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9)}); err == nil {
		_ = l.Close()
		t.Skip("this host binds non-local addresses")
	} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("binding 192.0.2.9: %v", err)
	}
	f := newFixture(t)
	c := f.config(t, spec{})
	c.Media.Bind = "192.0.2.9"
	r := checkMediaRange(&env{cfg: c})
	expect(t, []Result{r}, "local.media_ports/"+f.mediaRange, LevelMust, VerdictFail, "media.bind 192.0.2.9 is not an address of this host")
}
