package readiness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

var (
	checkTrunkResolve = check{
		id:          "trunk.resolve",
		requirement: "the trunk URI resolves per RFC 3263 (_sips._tcp SRV, then A) to at least one target",
		level:       LevelMust,
	}
	checkTrunkTLS = check{
		id:          "trunk.tls",
		requirement: "SIP over TLS 1.2+ to the target: its chain verifies to tls.ca and its certificate carries the trunk identity",
		level:       LevelMust,
	}
	checkTrunkOptions = check{
		id:          "trunk.options",
		requirement: "the target answers an out-of-dialog SIP OPTIONS over that TLS connection",
		level:       LevelShould,
	}
)

// checkTrunks checks each trunk that has a uri: its RFC 3263 resolution,
// then for each of its first maxTargets targets a TLS handshake as the SBC
// makes it and an OPTIONS ping. Trunks are checked concurrently; results
// keep the configuration order.
func checkTrunks(ctx context.Context, e *env) []Result {
	var trunks []config.Trunk
	for _, t := range e.cfg.Trunks {
		if t.URI != "" {
			trunks = append(trunks, t)
		}
	}
	if len(trunks) == 0 {
		return nil
	}
	res := e.res
	if res == nil {
		var out []Result
		for _, t := range trunks {
			out = append(out, checkTrunkResolve.on(t.Name).miss("no resolver: no DNS server (see dns.servers)"))
		}
		return out
	}
	per := make([][]Result, len(trunks))
	var wg sync.WaitGroup
	for i, t := range trunks {
		wg.Go(func() { per[i] = checkTrunk(ctx, e, res, t) })
	}
	wg.Wait()
	var out []Result
	for _, r := range per {
		out = append(out, r...)
	}
	return out
}

func checkTrunk(ctx context.Context, e *env, res *dnsresolve.Resolver, t config.Trunk) []Result {
	c := checkTrunkResolve.on(t.Name)
	uri, err := config.ParseTrunkURI(t.URI)
	if err != nil {
		return []Result{c.miss("%v", err)}
	}
	if uri.Port < 0 || uri.Port > 65535 {
		return []Result{c.miss("%s: bad port", t.URI)}
	}
	rctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	targets, err := res.Resolve(rctx, uri.Host, uint16(uri.Port))
	cancel()
	if err != nil {
		return []Result{c.miss("%s: %v", t.URI, err)}
	}
	if len(targets) == 0 {
		return []Result{c.miss("%s: no targets", t.URI)}
	}
	list := make([]string, len(targets))
	for i, tg := range targets {
		list[i] = describeTarget(tg)
	}
	note := ""
	if len(targets) > maxTargets {
		note = fmt.Sprintf("; checking the first %d", maxTargets)
		targets = targets[:maxTargets]
	}
	out := []Result{c.ok("%s → %s%s", t.URI, strings.Join(list, ", "), note)}
	for _, tg := range targets {
		out = append(out, checkTarget(ctx, e, t, uri, tg)...)
	}
	return out
}

func describeTarget(t dnsresolve.Target) string {
	if t.FromSRV {
		return fmt.Sprintf("%s %s (SRV %d %d)", t.Host, t.Addr, t.Priority, t.Weight)
	}
	if t.Host == t.Addr.Addr().String() {
		return t.Addr.String()
	}
	return fmt.Sprintf("%s %s", t.Host, t.Addr)
}

// checkTarget makes the TLS connection the SBC makes to target t of trunk
// tr, with tlsconf.Dial as sip's transport does (same SNI rule, identity
// check, signalling DSCP and refusal reasons) and, when it succeeds, pings
// over the same connection.
func checkTarget(ctx context.Context, e *env, tr config.Trunk, uri sip.Uri, t dnsresolve.Target) []Result {
	addr := t.Addr.String()
	c := checkTrunkTLS.on(tr.Name, addr)
	ping := checkTrunkOptions.on(tr.Name, addr)
	if e.store == nil {
		return []Result{c.miss("not checked: our certificate did not load (see cert.load)")}
	}
	minV, err := tlsconf.ParseMinVersion(e.cfg.TLS.MinVersion)
	if err != nil {
		return []Result{c.miss("tls.min_version: %v", err)}
	}
	want := tr.Identity
	if want == "" {
		want = t.Host
	}

	conn, raw, err := tlsconf.Dial(ctx, tlsconf.DialOptions{
		Addr: addr, SNI: t.Host, Identity: tr.Identity, Store: e.store, MinVersion: minV,
		Timeout: e.opts.Timeout, Control: media.DSCPControl(e.cfg.Media.DSCP.Signalling),
	})
	if ce, ok := errors.AsType[*tlsconf.ConnectError](err); ok {
		return []Result{c.miss("TCP connect to %s failed: %v", addr, ce.Err)}
	}
	if err != nil {
		var peer []*x509.Certificate
		if he, ok := errors.AsType[*tlsconf.HandshakeError](err); ok {
			peer = he.Peer
		}
		reason, detail := tlsconf.Classify(err)
		return []Result{
			c.miss("handshake failed: reason %s: %s; peer %s; expected identity %q", reason, detail, describePeer(peer), want),
			ping.miss("not sent: no TLS connection"),
		}
	}
	defer raw.Close()
	cs := conn.ConnectionState()
	tlsRes := c.ok("%s, %s; peer %s; chain verifies to tls.ca; identity %q matches",
		tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), describePeer(cs.PeerCertificates), want)

	pctx, pcancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer pcancel()
	p, err := sendOptions(pctx, conn, e.cfg.Node.FQDN, uri)
	if err != nil {
		return []Result{tlsRes, ping.miss("no answer to OPTIONS: %v", err)}
	}
	if p.code/100 == 2 {
		return []Result{tlsRes, ping.ok("%d %s in %s", p.code, p.reason, p.rtt.Round(time.Microsecond))}
	}
	return []Result{tlsRes, ping.miss("answers SIP, but OPTIONS got %d %s in %s", p.code, p.reason, p.rtt.Round(time.Microsecond))}
}

// describePeer names the peer's leaf: subject, SAN DNS names and issuer.
func describePeer(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return "(no certificate seen)"
	}
	l := chain[0]
	return fmt.Sprintf("subject %q SAN %s issuer %q, %d certificate(s) sent",
		l.Subject.String(), quoted(l.DNSNames), l.Issuer.String(), len(chain))
}
