// Package dnsresolve locates the TLS servers of a sips: URI host following
// RFC 3263 §4 ("Locating a SIP Server"), restricted to what edge-sbc uses:
// the TLS transport over TCP and, by default, IPv4 only.
//
// # Implemented RFC 3263 steps
//
// §4.1, transport selection, is fixed to TLS over TCP: the URI scheme is
// sips (RFC 3261 §26.2.2) and edge-sbc supports no other transport toward
// these peers. No NAPTR query is made; see below.
//
// §4.2, port and IP address determination, is implemented in full for TLS:
//
//   - A numeric IP host is used directly, with the URI port or the TLS
//     default 5061. No DNS query is made.
//   - A domain name with an explicit port: the A records of the name (then
//     AAAA when Config.IPv6 is set) with that port; no SRV query.
//   - A domain name without a port: SRV query for _sips._tcp.<host>. The
//     records are ordered per RFC 2782 (priority ascending, weighted random
//     selection within a priority, see §4.3) and every A (then AAAA) record
//     of every target is returned in that order. Addresses found in the
//     additional section of the SRV response are used without a further
//     query. A lone SRV record with target "." means the service is not
//     available (ErrServiceUnavailable). If the SRV query yields NXDOMAIN or
//     NODATA, the A (AAAA) records of the host itself are used with port
//     5061. If the SRV query fails (SERVFAIL, timeout) the error is returned
//     rather than guessing with the A records.
//
// §4.3, the RFC 2782 process: an SRV target that cannot be resolved is
// skipped and the next one used. Failover between the returned addresses
// is the caller's job; Health records the addresses (address and port, not
// domains) that failed so they can be moved to the end with Health.Order.
//
// # NAPTR is skipped
//
// The NAPTR query of §4.1 is a SHOULD, and for a client that supports one
// transport it cannot change the outcome in practice: a client resolving a
// sips URI must discard every NAPTR service that is not "SIPS+D2X", TLS
// needs a reliable transport so only SIPS+D2T is usable, and the SRV name
// that service points to is conventionally the same _sips._tcp.<host> that
// §4.1 says to query when no NAPTR records exist. The peers the SBC talks
// to (Webex Calling and B2B SIP trunk providers) publish _sips._tcp SRV
// records, so the extra NAPTR round trip would only add latency and one
// more failure mode. What is lost: a domain whose SIPS+D2T NAPTR record
// points at a non-standard SRV name is not followed.
//
// # DNS transport and caching
//
// The package has two layers. [Client] is the wire client: the servers
// of Config.Servers (else the nameservers of resolv.conf), one question at
// a time, no cache. [Resolver] implements RFC 3263 on top of a Client and
// caches; [Resolver.Client] returns the Client it queries through, so that
// `edge-sbc check` asks the SBC's own names (A, PTR, SRV) with the very
// client `edge-sbc run` resolves trunks with. [FromConfig] maps the dns:
// section of the configuration, for both commands.
//
// Queries go over UDP with an EDNS0 OPT record advertising 4096 bytes
// (RFC 6891) and are retried over TCP when the response is truncated (TC
// bit, RFC 1035 §4.2.1, RFC 7766). SERVFAIL, REFUSED, network errors and
// timeouts move to the next server; Config.Attempts passes are made over
// the server list. Positive answers are cached per (name, type) for their
// TTL clamped to [Config.MinTTL, Config.MaxTTL]; NXDOMAIN and NODATA are
// cached for at most Config.NegativeTTL (RFC 2308 §5). Concurrent identical
// queries are collapsed into one upstream query. The cache is bounded.
//
// CNAME chains in answers are followed. Search lists and ndots from
// resolv.conf are not applied: the hosts of SIP URIs are taken as fully
// qualified names.
//
// # Concurrency
//
// A Client, a Resolver and a Health are safe for concurrent use by multiple
// goroutines. The package keeps no mutable package-level state and starts
// no background goroutines.
package dnsresolve
