package readiness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	defaultResolvConf = "/etc/resolv.conf"
	ednsSize          = 4096
)

var checkDNSServers = check{
	id:          "dns.servers",
	requirement: "the SBC uses a DNS server that answers A and SRV queries",
	level:       LevelMust,
}

// dnsClient asks the configured DNS servers (dns.servers, else the
// nameservers of resolv.conf) one question at a time, without caching.
type dnsClient struct {
	servers []string
	timeout time.Duration
}

// newDNSClient returns a client for servers, or for the nameservers of the
// resolv.conf file when servers is empty. When no server is known it
// returns nil and a failed result saying why.
func newDNSClient(servers []string, resolvConf string, timeout time.Duration) (*dnsClient, []Result) {
	src := "dns.servers"
	if len(servers) == 0 {
		src = resolvConf
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, []Result{checkDNSServers.miss("no dns.servers configured and %s unreadable: %v", resolvConf, err)}
		}
		port := cc.Port
		if port == "" {
			port = "53"
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, port))
		}
		if len(servers) == 0 {
			return nil, []Result{checkDNSServers.miss("no dns.servers configured and no nameserver in %s", resolvConf)}
		}
	}
	return &dnsClient{servers: servers, timeout: timeout}, []Result{
		checkDNSServers.ok("asking %s (from %s)", strings.Join(servers, ", "), src),
	}
}

// errNoAnswer marks a query no server answered usefully.
var errNoAnswer = errors.New("no usable DNS answer")

// query asks each server in turn for name/qtype until one answers with
// NOERROR or NXDOMAIN, over UDP with EDNS0 and again over TCP when the
// answer is truncated. The answer's records of type qtype are returned;
// none with a nil error means NXDOMAIN or NODATA.
func (c *dnsClient) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(ednsSize, false)
	var errs []error
	for _, srv := range c.servers {
		resp, err := c.exchange(ctx, "udp", m, srv)
		if err == nil && resp.Truncated {
			resp, err = c.exchange(ctx, "tcp", m, srv)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			errs = append(errs, fmt.Errorf("%s: %s", srv, dns.RcodeToString[resp.Rcode]))
			continue
		}
		var out []dns.RR
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype {
				out = append(out, rr)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s %s: %w: %w", dns.TypeToString[qtype], name, errNoAnswer, errors.Join(errs...))
}

func (c *dnsClient) exchange(ctx context.Context, network string, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl := &dns.Client{Net: network, Timeout: c.timeout, UDPSize: ednsSize}
	resp, _, err := cl.ExchangeContext(ctx, m.Copy(), server)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// normName lower-cases a DNS name and drops the trailing dot.
func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
