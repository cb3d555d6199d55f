package readiness

import (
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

func TestCertNoClientAuth(t *testing.T) {
	f := newFixture(t)
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{testFQDN}, ServerAuth: true, ClientAuth: false, FileBase: "sbc-noclient"})

	t.Run("no mutual TLS: should, warns", func(t *testing.T) {
		rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key, clientAuth: "optional"}))
		expect(t, rs, "cert.eku.client", LevelShould, VerdictWarn, "lacks clientAuth", "Webex requires both for mutual TLS")
		expect(t, rs, "cert.eku.server", LevelMust, VerdictOK)
		if Failed(rs) {
			t.Errorf("run failed:\n%s", dump(rs))
		}
	})
	t.Run("mutual TLS listener: must, fails", func(t *testing.T) {
		rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key, clientAuth: "required"}))
		expect(t, rs, "cert.eku.client", LevelMust, VerdictFail, "lacks clientAuth", "client_auth: required", "Webex requires both for mutual TLS")
		if !Failed(rs) {
			t.Errorf("run did not fail:\n%s", dump(rs))
		}
	})
	t.Run("trunk on 5062: must, fails", func(t *testing.T) {
		c := f.config(t, spec{cert: lf.Cert, key: lf.Key, trunks: []trunkSpec{{name: "webex", uri: "sips:192.0.2.1:5062", identity: "callservice.ciscospark.com"}}})
		if r := certClientAuth(mustLeaf(t, lf), c); r.Level != LevelMust || r.Verdict != VerdictFail {
			t.Errorf("got %+v", r)
		}
	})
}

func TestCertNoServerAuth(t *testing.T) {
	f := newFixture(t)
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{testFQDN}, ClientAuth: true, FileBase: "sbc-noserver"})
	rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key}))
	expect(t, rs, "cert.eku.server", LevelMust, VerdictFail, "lacks serverAuth")
}

func TestCertNoEKUExtensionWarns(t *testing.T) {
	f := newFixture(t)
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{testFQDN}, FileBase: "sbc-noeku"})
	rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key}))
	expect(t, rs, "cert.eku.server", LevelMust, VerdictWarn, "no EKU extension")
	expect(t, rs, "cert.eku.client", LevelShould, VerdictWarn, "no EKU extension")
}

func TestCertExpiry(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	leaf := mustLeaf(t, f.ourLeaf())
	for _, tc := range []struct {
		name    string
		now     time.Time
		verdict string
		want    string
	}{
		{"fresh", leaf.NotBefore.Add(48 * time.Hour), VerdictOK, "days left"},
		{"10 days left", leaf.NotAfter.Add(-10*24*time.Hour - time.Hour), VerdictWarn, "10 days left"},
		{"expired", leaf.NotAfter.Add(3 * 24 * time.Hour), VerdictFail, "expired on"},
		{"not yet valid", leaf.NotBefore.Add(-time.Hour), VerdictFail, "not valid before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			e := &env{cfg: c, opts: Options{Now: func() time.Time { return now }}.withDefaults()}
			e.store, _ = loadStore(c)
			rs := checkCert(e)
			expect(t, rs, "cert.expiry", LevelMust, tc.verdict, tc.want)
		})
	}
}

func TestCertExpiredFile(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{testFQDN}, ServerAuth: true, ClientAuth: true,
		NotBefore: now.Add(-60 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour), FileBase: "sbc-expired"})
	rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key}))
	expect(t, rs, "cert.expiry", LevelMust, VerdictFail, "expired on")
	expect(t, rs, "cert.chain", LevelShould, VerdictWarn, "reason expired")
	if !Failed(rs) {
		t.Error("an expired certificate did not fail the run")
	}
}

func TestCertWrongName(t *testing.T) {
	f := newFixture(t)
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{"other.example.test"}, ServerAuth: true, ClientAuth: true, FileBase: "sbc-wrongname"})
	rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key}))
	expect(t, rs, "cert.name", LevelMust, VerdictFail, `"other.example.test"`, "does not match node.fqdn "+testFQDN)
}

func TestCertChain(t *testing.T) {
	f := newFixture(t)
	t.Run("leaf only", func(t *testing.T) {
		leafOnly := writeLeafOnly(t, f.ourLeaf().Cert)
		rs := run(t, f.config(t, spec{cert: leafOnly, key: f.ourLeaf().Key}))
		expect(t, rs, "cert.chain", LevelShould, VerdictWarn, "only the leaf", "cannot be checked offline")
	})
	t.Run("other CA", func(t *testing.T) {
		other, err := tlsconf.WriteDevPKI(t.TempDir(), []string{testFQDN}, nil)
		if err != nil {
			t.Fatal(err)
		}
		lf := other.Leaves[testFQDN]
		rs := run(t, f.config(t, spec{cert: lf.Cert, key: lf.Key}))
		expect(t, rs, "cert.chain", LevelShould, VerdictWarn, "reason unknown_ca")
	})
}

func TestCertLoadFails(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{})
	c.TLS.Key = f.pki.CAKey // the CA key does not match our leaf
	rs := run(t, c)
	expect(t, rs, "cert.load", LevelMust, VerdictFail, "does not match")
	for _, r := range rs {
		if r.ID == "cert.expiry" {
			t.Errorf("certificate checks ran without a certificate: %+v", r)
		}
	}
}

func TestTLSFloor(t *testing.T) {
	f := newFixture(t)
	rs := run(t, f.config(t, spec{minVersion: "1.3"}))
	expect(t, rs, "tls.min_version", LevelMust, VerdictOK, "TLS 1.3")
	c := f.config(t, spec{})
	c.TLS.MinVersion = "1.1"
	if r := checkTLSFloor(c); r.Verdict != VerdictFail {
		t.Errorf("TLS 1.1 floor: %+v", r)
	}
}
