package readiness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
)

var (
	checkDNSServers = check{
		id:          "dns.servers",
		requirement: "the SBC uses a DNS server that answers A and SRV queries",
		level:       LevelMust,
	}
	checkFQDNA = check{
		id:          "dns.a",
		requirement: "node.fqdn (host FQDN / SRV target) has an A record pointing at the SBC's IPv4 address",
		level:       LevelMust,
	}
	checkPTR = check{
		id:          "dns.ptr",
		requirement: "a PTR record for the SBC's IPv4 address names node.fqdn",
		level:       LevelShould,
	}
	checkSRV = check{
		id:          "dns.srv",
		requirement: "_sips._tcp.<domain> SRV points at node.fqdn on a port the SBC listens on",
		level:       LevelShould,
	}
)

// newResolver builds the resolver `edge-sbc run` builds (dnsresolve.New of
// the dns: section): the trunks are resolved with it, and our own names
// asked with its Client. When no DNS server is known it returns nil and
// the failed dns.servers result.
func newResolver(cfg *config.Config, resolvConf string) (*dnsresolve.Resolver, Result) {
	res, err := dnsresolve.New(dnsresolve.FromConfig(cfg.DNS), dnsresolve.WithResolvConf(resolvConf))
	if err != nil {
		return nil, checkDNSServers.miss("no DNS server: %v", err)
	}
	src := "dns.servers"
	if len(cfg.DNS.Servers) == 0 {
		src = resolvConf
	}
	return res, checkDNSServers.ok("asking %s (from %s)", strings.Join(res.Client().Servers(), ", "), src)
}

// lookup asks our DNS client for the records of name and qtype, within
// the step timeout; its errors name the question.
func lookup(ctx context.Context, e *env, name string, qtype uint16) ([]dns.RR, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	return e.res.Client().Lookup(ctx, name, qtype)
}

// checkDNS runs the checks of our own names: the A record of node.fqdn,
// the PTR record of each of its addresses, and the _sips._tcp SRV record of
// each domain in node.domains other than the FQDN.
func checkDNS(ctx context.Context, e *env) []Result {
	fqdn := normName(e.cfg.Node.FQDN)
	if e.res == nil {
		return []Result{checkFQDNA.miss("%s not checked: no DNS server", fqdn)}
	}
	var out []Result
	a, addrs := checkARecord(ctx, e, fqdn)
	out = append(out, a)
	if len(addrs) == 0 {
		out = append(out, checkPTR.miss("not checked: %s has no IPv4 address", fqdn))
	}
	for _, ip := range addrs {
		out = append(out, checkPTRRecord(ctx, e, fqdn, ip))
	}
	for _, d := range e.cfg.Node.Domains {
		if d = normName(d); d == fqdn || d == "" {
			continue
		}
		if _, err := netip.ParseAddr(d); err == nil {
			continue // an IP "domain" has no SRV record
		}
		out = append(out, checkSRVRecord(ctx, e, fqdn, d))
	}
	return out
}

// checkARecord looks up the A records of fqdn. When node.public_ipv4 is
// set it must be one of them.
func checkARecord(ctx context.Context, e *env, fqdn string) (Result, []netip.Addr) {
	c := checkFQDNA
	rrs, err := lookup(ctx, e, fqdn, dns.TypeA)
	if err != nil {
		return c.miss("A lookup failed: %v", err), nil
	}
	var addrs []netip.Addr
	for _, rr := range rrs {
		ar, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		if a, ok := netip.AddrFromSlice(ar.A); ok && a.Unmap().Is4() {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return c.miss("no A record for %s (Webex connects to IPv4 only)", fqdn), nil
	}
	list := joinAddrs(addrs)
	if pub := e.cfg.Node.PublicIPv4; pub != "" {
		want, err := netip.ParseAddr(pub)
		if err == nil && !slices.Contains(addrs, want) {
			return c.miss("%s A %s does not include node.public_ipv4 %s", fqdn, list, pub), addrs
		}
	}
	return c.ok("%s A %s", fqdn, list), addrs
}

// checkPTRRecord looks up the PTR record of ip; one of its names must be fqdn.
func checkPTRRecord(ctx context.Context, e *env, fqdn string, ip netip.Addr) Result {
	c := checkPTR.on(ip.String())
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return c.miss("cannot build the reverse name of %s: %v", ip, err)
	}
	rrs, err := lookup(ctx, e, rev, dns.TypePTR)
	if err != nil {
		return c.miss("PTR lookup failed: %v", err)
	}
	if len(rrs) == 0 {
		return c.miss("no PTR record for %s (%s)", ip, strings.TrimSuffix(rev, "."))
	}
	var names []string
	for _, rr := range rrs {
		ptr, ok := rr.(*dns.PTR)
		if !ok {
			continue
		}
		n := normName(ptr.Ptr)
		if n == fqdn {
			return c.ok("%s PTR %s", ip, n)
		}
		names = append(names, n)
	}
	return c.miss("%s PTR %s, not %s", ip, strings.Join(names, ", "), fqdn)
}

// checkSRVRecord looks up _sips._tcp.<domain>; a record must name fqdn
// with the port of one of our listeners.
func checkSRVRecord(ctx context.Context, e *env, fqdn, domain string) Result {
	c := checkSRV.on(domain)
	name := "_sips._tcp." + domain
	rrs, err := lookup(ctx, e, name, dns.TypeSRV)
	if err != nil {
		return c.miss("SRV lookup failed: %v", err)
	}
	if len(rrs) == 0 {
		return c.miss("no SRV record %s: callers to @%s cannot find the SBC (publish %s SRV 10 10 5061 %s.)", name, domain, name, fqdn)
	}
	ports := listenPorts(e)
	var seen []string
	for _, rr := range rrs {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		target := normName(srv.Target)
		seen = append(seen, fmt.Sprintf("%s:%d", target, srv.Port))
		if target != fqdn {
			continue
		}
		if l, ok := ports[srv.Port]; ok {
			return c.ok("%s SRV %d %d %d %s: port %d is listener %s (client_auth %s)",
				name, srv.Priority, srv.Weight, srv.Port, target, srv.Port, l.addr, l.clientAuth)
		}
	}
	return c.miss("%s SRV points at %s; want %s on a listening port (%s)",
		name, strings.Join(seen, ", "), fqdn, joinPorts(ports))
}

// listener is what the SRV check says about a listening port.
type listener struct{ addr, clientAuth string }

// listenPorts maps each configured listener port to its listener.
func listenPorts(e *env) map[uint16]listener {
	out := make(map[uint16]listener)
	for _, l := range e.cfg.Listen {
		_, p, err := net.SplitHostPort(l.Addr)
		if err != nil {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			continue
		}
		if _, dup := out[uint16(n)]; !dup {
			out[uint16(n)] = listener{addr: l.Addr, clientAuth: l.ClientAuth}
		}
	}
	return out
}

func joinPorts(m map[uint16]listener) string {
	var ps []int
	for p := range m {
		ps = append(ps, int(p))
	}
	slices.Sort(ps)
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// normName lower-cases a DNS name and drops the trailing dot.
func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
