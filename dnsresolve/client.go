package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Client is the DNS wire client: it asks the configured servers (or the
// nameservers of resolv.conf) one question at a time, over UDP with an
// EDNS0 OPT record and again over TCP when the answer is truncated, making
// Config.Attempts passes over the server list. It keeps no cache; the
// Resolver caches on top of it, and `edge-sbc check` asks it directly for
// the records of the SBC's own names. A Client is safe for concurrent use
// and owns no goroutines.
type Client struct {
	servers  []string
	timeout  time.Duration
	attempts int
	log      zerolog.Logger
	udp      *dns.Client
	tcp      *dns.Client
}

// NewClient returns a Client for cfg.Servers, cfg.Timeout and
// cfg.Attempts (the other fields are the Resolver's), defaults applied.
// When cfg.Servers is empty it reads the resolv.conf file (WithResolvConf);
// it performs no network I/O. WithLogger and WithResolvConf apply; the
// other options are ignored.
func NewClient(cfg Config, opts ...Option) (*Client, error) {
	o := newOptions(opts)
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: negative Timeout %s", ErrInvalidConfig, cfg.Timeout)
	case cfg.Attempts < 0:
		return nil, fmt.Errorf("%w: negative Attempts %d", ErrInvalidConfig, cfg.Attempts)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	servers, err := serverList(cfg.Servers, o.resolvConf)
	if err != nil {
		return nil, err
	}
	return &Client{
		servers:  servers,
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		log:      o.log,
		udp:      &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsUDPSize},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}, nil
}

// serverList normalises configured servers to "ip:port", or reads them from
// the resolv.conf file at path when none are configured.
func serverList(cfgServers []string, path string) ([]string, error) {
	if len(cfgServers) == 0 {
		cc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: no Servers and reading %s: %w", ErrInvalidConfig, path, err)
		}
		port := cc.Port
		if port == "" {
			port = "53"
		}
		for _, s := range cc.Servers {
			cfgServers = append(cfgServers, net.JoinHostPort(s, port))
		}
		if len(cfgServers) == 0 {
			return nil, fmt.Errorf("%w: no nameserver in %s", ErrInvalidConfig, path)
		}
	}
	out := make([]string, 0, len(cfgServers))
	for _, s := range cfgServers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			ip, ipErr := netip.ParseAddr(s)
			if ipErr != nil {
				return nil, fmt.Errorf("%w: server %q is not ip:port: %w", ErrInvalidConfig, s, err)
			}
			ap = netip.AddrPortFrom(ip, 53)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("%w: server %q has port 0", ErrInvalidConfig, s)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// Servers returns the servers asked, as "ip:port", in order.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// Lookup asks for the records of name (a domain name, trailing dot
// optional) and type qtype and returns those of the answer section: owned
// by name or by the end of the CNAME chain that starts at it. NXDOMAIN and
// NODATA both return no records and a nil error. Errors are those of
// Exchange.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	fqdn := strings.ToLower(dns.Fqdn(name))
	resp, _, err := c.Exchange(ctx, fqdn, qtype)
	if err != nil {
		return nil, err
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, nil
	}
	owner, _, _ := followCNAME(resp, fqdn)
	var out []dns.RR
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype == qtype && h.Class == dns.ClassINET && strings.EqualFold(h.Name, owner) {
			out = append(out, rr)
		}
	}
	return out, nil
}

// followCNAME returns the owner of the records that answer a question for
// name: name itself, or the last name of the CNAME chain starting at name
// in resp's answer section (RFC 1034 §3.6.2, at most maxCNAMEChain links),
// and the smallest TTL of the CNAME records followed (followed false when
// there were none).
func followCNAME(resp *dns.Msg, name string) (owner string, ttl uint32, followed bool) {
	owner = name
	for range maxCNAMEChain {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				next = strings.ToLower(dns.Fqdn(c.Target))
				if !followed || c.Hdr.Ttl < ttl {
					ttl, followed = c.Hdr.Ttl, true
				}
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	return owner, ttl, followed
}

// Exchange sends the query (name must be fully qualified) to each server
// in turn, Config.Attempts passes over the list, and returns the first
// NOERROR or NXDOMAIN response and the server that sent it. SERVFAIL,
// REFUSED and other error rcodes, network errors, timeouts and responses
// that do not match the query move to the next server. Errors wrap
// ErrServFail (at least one attempt failed other than by a timeout),
// ErrTimeout, or the context's cause.
func (c *Client) Exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, error) {
	var (
		timeouts, failures int
		lastErr            error
	)
	for range c.attempts {
		for _, server := range c.servers {
			if ctx.Err() != nil {
				return nil, "", fmt.Errorf("dnsresolve: query %s %s: %w", name, dns.TypeToString[qtype], context.Cause(ctx))
			}
			resp, err := c.exchangeServer(ctx, server, name, qtype)
			if err != nil {
				if ctx.Err() != nil {
					return nil, "", fmt.Errorf("dnsresolve: query %s %s: %w", name, dns.TypeToString[qtype], context.Cause(ctx))
				}
				if isTimeout(err) {
					timeouts++
				} else {
					failures++
				}
				lastErr = fmt.Errorf("server %s: %w", server, err)
				c.log.Debug().Str("name", name).Str("type", dns.TypeToString[qtype]).Str("server", server).Err(err).Msg("dnsresolve: query attempt failed")
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, server, nil
			}
			// SERVFAIL, REFUSED, NOTIMP, FORMERR...: try the next server.
			failures++
			lastErr = fmt.Errorf("server %s answered %s", server, dns.RcodeToString[resp.Rcode])
			c.log.Debug().Str("name", name).Str("type", dns.TypeToString[qtype]).Str("server", server).Str("rcode", dns.RcodeToString[resp.Rcode]).Msg("dnsresolve: query attempt failed")
		}
	}
	sentinel := ErrServFail
	if failures == 0 {
		sentinel = ErrTimeout
	}
	// The last attempt's error is kept as text, not wrapped: a per-attempt
	// deadline must not read as the caller's context having ended.
	return nil, "", fmt.Errorf("%w: %s %s: %d attempts failed, last: %v", sentinel, name, dns.TypeToString[qtype], timeouts+failures, lastErr)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// exchangeServer makes one attempt against server: UDP with EDNS0, then TCP
// if the UDP response is truncated (RFC 7766 §5).
func (c *Client) exchangeServer(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype) // random ID, RD set
	m.SetEdns0(ednsUDPSize, false)

	resp, err := c.exchangeOnce(ctx, c.udp, m, server)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		m.Id = dns.Id()
		resp, err = c.exchangeOnce(ctx, c.tcp, m, server)
		if err != nil {
			return nil, fmt.Errorf("tcp retry of truncated answer: %w", err)
		}
	}
	if err := checkResponse(m, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// exchangeOnce sends m to server with client dc, bounded by the timeout and
// ctx; cancelling ctx aborts the read at once.
func (c *Client) exchangeOnce(ctx context.Context, dc *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	co, err := dc.DialContext(actx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// The client only honours deadlines; close the socket on cancellation.
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	resp, _, err := dc.ExchangeWithConnContext(actx, m, co)
	return resp, err
}

// errBadResponse marks a response that does not answer the query sent.
var errBadResponse = errors.New("response does not match query")

func checkResponse(q, resp *dns.Msg) error {
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return fmt.Errorf("%w: not a query response", errBadResponse)
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return nil // question echo is optional on errors; caller handles rcode
	}
	if len(resp.Question) != 1 {
		return fmt.Errorf("%w: %d questions", errBadResponse, len(resp.Question))
	}
	got, want := resp.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) {
		return fmt.Errorf("%w: question %s", errBadResponse, got.String())
	}
	return nil
}
