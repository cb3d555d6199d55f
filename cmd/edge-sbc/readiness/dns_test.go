package readiness

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

func TestDNSMissingPTRWarns(t *testing.T) {
	f := newFixture(t)
	f.zone.remove("1.0.0.127.in-addr.arpa", dns.TypePTR)
	rs := run(t, f.config(t, spec{}))
	expect(t, rs, "dns.ptr/127.0.0.1", LevelShould, VerdictWarn, "no PTR record for 127.0.0.1")
	expect(t, rs, "dns.a", LevelMust, VerdictOK)
	if Failed(rs) {
		t.Errorf("a missing PTR (a recommendation) made the run fail:\n%s", dump(rs))
	}
}

func TestDNSWrongPTRWarns(t *testing.T) {
	f := newFixture(t)
	f.zone.remove("1.0.0.127.in-addr.arpa", dns.TypePTR)
	f.zone.add(t, "1.0.0.127.in-addr.arpa. 60 IN PTR localhost.")
	rs := run(t, f.config(t, spec{}))
	expect(t, rs, "dns.ptr/127.0.0.1", LevelShould, VerdictWarn, "PTR localhost, not "+testFQDN)
}

func TestDNSMissingAFails(t *testing.T) {
	f := newFixture(t)
	f.zone.remove(testFQDN, dns.TypeA)
	rs := run(t, f.config(t, spec{}))
	expect(t, rs, "dns.a", LevelMust, VerdictFail, "no A record for "+testFQDN)
	expect(t, rs, "dns.ptr", LevelShould, VerdictWarn, "not checked")
	if !Failed(rs) {
		t.Errorf("a missing A record did not make the run fail:\n%s", dump(rs))
	}
}

func TestDNSPublicIPv4NotInA(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	c.Node.PublicIPv4 = "192.0.2.10"
	rs := run(t, c)
	expect(t, rs, "dns.a", LevelMust, VerdictFail, "does not include node.public_ipv4 192.0.2.10")
}

func TestDNSSRV(t *testing.T) {
	for _, tc := range []struct {
		name    string
		record  string // replaces the fixture's SRV record; empty: none
		verdict string
		want    string
	}{
		{"missing", "", VerdictWarn, "no SRV record _sips._tcp." + testDomain},
		{"other port", "_sips._tcp.%[1]s. 60 IN SRV 10 10 5999 %[2]s.", VerdictWarn, testFQDN + ":5999"},
		{"other target", "_sips._tcp.%[1]s. 60 IN SRV 10 10 %[3]d other.example.test.", VerdictWarn, "other.example.test"},
		{"second record ok", "_sips._tcp.%[1]s. 60 IN SRV 20 10 %[3]d %[2]s.", VerdictOK, "is listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.zone.remove("_sips._tcp."+testDomain, dns.TypeSRV)
			if tc.name == "second record ok" {
				f.zone.add(t, fmt.Sprintf("_sips._tcp.%s. 60 IN SRV 10 10 5999 %s.", testDomain, testFQDN))
			}
			if tc.record != "" {
				f.zone.add(t, fmt.Sprintf(tc.record, testDomain, testFQDN, f.listenPort))
			}
			rs := run(t, f.config(t, spec{}))
			expect(t, rs, "dns.srv/"+testDomain, LevelShould, tc.verdict, tc.want)
		})
	}
}

func TestDNSNoServer(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	c.DNS.Servers = nil
	rs := Run(t.Context(), c, Options{Timeout: testTimeout, ResolvConf: t.TempDir() + "/missing.conf"})
	expect(t, rs, "dns.servers", LevelMust, VerdictFail, "missing.conf")
	expect(t, rs, "dns.a", LevelMust, VerdictFail, "no DNS server")
}
