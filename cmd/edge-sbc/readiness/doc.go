// Package readiness checks an edge-sbc configuration and the host it runs
// on against the network requirements of Webex B2B (SIP URI) calling, for
// the "edge-sbc check" command.
//
// [Run] returns one [Result] per check. Each names the requirement it
// tests, its level ("must": the run fails, see [Failed]; "should": a
// recommendation, never worse than a warning), a verdict (ok, warn, fail)
// and the evidence seen. [WriteTable] and [WriteJSON] print them.
//
// # What is checked, requirement by requirement
//
// The network steps are those of `edge-sbc run`, not copies of them: DNS
// through the dnsresolve Client and Resolver built from the dns: section
// (dnsresolve.FromConfig), trunk connections through tlsconf.Dial (the
// B2BUA's outbound leg: SNI rule, identity check, signalling DSCP, and
// tlsconf.Classify reasons), DSCP through media.SetDSCP.
//
// DNS, asked with the dnsresolve Client of the servers in dns.servers
// (else the nameservers of /etc/resolv.conf), without a cache:
//
//   - dns.servers (must): a DNS server is known.
//   - dns.a (must): node.fqdn has A records ("an SRV target or host FQDN
//     must have an A record pointing at the SBC's IPv4 address"); when
//     node.public_ipv4 is set it must be one of them.
//   - dns.ptr/<address> (should): the PTR record of each of those
//     addresses names node.fqdn.
//   - dns.srv/<domain> (should): for each node.domains entry other than
//     node.fqdn, _sips._tcp.<domain> SRV points at node.fqdn on the port of
//     one of our listeners; the evidence names the port and listener.
//
// Our certificate (tls.cert, tls.key, tls.ca loaded with tlsconf.LoadStore):
//
//   - cert.load (must): the files load and the key matches the leaf.
//   - cert.expiry (must): the leaf is valid now; warn under 30 days left.
//   - cert.name (must): node.fqdn is in a SAN DNS entry (or the CN when
//     there is no SAN DNS), per tlsconf.MatchIdentity.
//   - cert.eku.server (must): EKU serverAuth.
//   - cert.eku.client (must with mutual TLS, should otherwise): EKU
//     clientAuth; Webex requires both for mutual TLS. Mutual TLS is in
//     use when a listener has client_auth: required or a trunk URI names
//     port 5062. A certificate without an EKU extension warns on both.
//   - cert.chain (should): tls.cert holds the leaf and its intermediates
//     (warn when it holds only a leaf that is not self-issued) and the
//     chain verifies to the roots in tls.ca. Whether Webex trusts the root
//     (a public CA) cannot be checked offline; the evidence says so.
//   - tls.min_version (must): the TLS floor is 1.2 or 1.3.
//   - tls.keylog (should): tls.keylog_file is not set; while it is, the
//     check warns that anyone who reads the file can decrypt every call's
//     signalling.
//
// This host:
//
//   - local.listen/<addr> (must): each listener address can be bound. When
//     it is in use by a TLS server presenting our own certificate the
//     verdict is warn: edge-sbc is probably already running.
//   - local.media_ports/<range> (must): the RTP/RTCP pairs at the first,
//     middle and last even port of media.port_range bind on media.bind.
//   - local.dscp (should): the audio, video and signalling (BFCP) DSCP
//     values can be set on a UDP socket and read back.
//   - local.stop_timeout (should): shutdown.drain_timeout plus
//     config.StopMargin (10s, for the BYEs and final CDRs) stays below
//     TimeoutStopSec of the installed edge-sbc.service as systemctl shows
//     it (drop-ins included): otherwise systemd SIGKILLs edge-sbc before
//     the calls are ended. Without systemd or the unit, the shipped unit's
//     value (which validation enforces) is reported.
//
// Each trunk with a uri, trunks concurrently, each step bounded by
// Options.Timeout:
//
//   - trunk.resolve/<trunk> (must): RFC 3263 resolution with dnsresolve
//     yields at least one target.
//   - trunk.tls/<trunk>/<ip:port> (must), for the first four targets: the
//     TLS connection the SBC makes (tlsconf.Dial with the target's name
//     and the trunk identity) succeeds; the evidence shows version, cipher
//     suite and peer certificate, or the tlsconf.Classify reason (expired,
//     unknown_ca, wrong_name, ...) of the failure, the reason `run` logs
//     ("outbound TLS refused") for the same target.
//   - trunk.options/<trunk>/<ip:port> (should): an out-of-dialog OPTIONS
//     over that connection gets a 2xx; the evidence gives the round trip.
//
// The running service's live view of the trunks (its OPTIONS monitor,
// trunks[].health), read from GET /metrics on metrics.listen, since check
// is another process (edge_sbc_trunk_target_up,
// edge_sbc_trunk_target_ping_seconds, edge_sbc_trunk_ping_seconds):
//
//   - trunk.health/<trunk>/<ip:port> (should), for each target of each
//     trunk with health.interval: up, with the round trip of its last
//     answered ping and the trunk's mean; or down (new calls skip it; with
//     every target down, calls to the trunk get 503).
//   - trunk.health (should), instead, when that cannot be shown: ok when
//     no trunk is monitored ("monitoring is off"); a warning when
//     metrics.listen is not set, when edge-sbc does not answer there
//     ("not running"), or, per trunk, when it has no ping result yet.
//
// Not checked: network quality (latency, jitter, loss), NAT binding
// lifetimes, SIP ALGs and TLS inspection on the path, MTU, firewall rules
// seen from the internet, whether the Webex cloud trusts our CA, and peer
// software versions (Expressway X8.5.3 or later).
package readiness
