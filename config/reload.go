package config

import (
	"fmt"
	"reflect"
)

// What a reload (SIGHUP) can apply to the running process.
//
// Live — applied by a reload, for new calls and connections (calls in
// progress keep what they started with): node.public_ipv4, node.domains,
// trunks (all keys), routes, sip.provisional_timeout, sip.answer_timeout,
// sip.session_expires, sip.header_allow_list, sip.body_allow_list, limits
// (all keys), log.level,
// shutdown.drain_timeout, shutdown.handoff, and the contents of the
// tls.cert, tls.key and tls.ca files (re-read by the certificate store).
//
// Start-only — read once when the process starts; a reload that changes any
// of them is refused whole (see StartOnlyChanges) and a restart is needed:
// node.fqdn, listen (the number of listeners and each one's addr,
// client_auth and unauthenticated_trunk), the tls.cert/tls.key/tls.ca
// paths (replace the files in place instead), tls.min_version,
// tls.handshake_timeout, dns (all keys: the resolver is built at start),
// sip.keepalive_interval, sip.max_message_size, media (all keys: the relay
// keeps its sockets, range and timers; SDP must never advertise an address
// no socket is bound to), log.format, metrics (all keys), cdr (all keys),
// tls.keylog_file, trace (all keys) and cluster (all keys, and the
// section's presence; the state key file is read at start).

// StartOnlyChanges returns the dotted keys (as in KeyError) of the
// start-only settings that differ between old, the configuration the
// process runs with, and next, the one a reload would apply; nil when next
// can be applied live. A listener list of another length is reported as
// "listen", and the listeners both have as listen[i].addr etc.
func StartOnlyChanges(old, next *Config) []string {
	var out []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	diff("node.fqdn", old.Node.FQDN, next.Node.FQDN)

	if len(old.Listen) != len(next.Listen) {
		out = append(out, "listen")
	}
	for i := range min(len(old.Listen), len(next.Listen)) {
		a, b := old.Listen[i], next.Listen[i]
		diff(fmt.Sprintf("listen[%d].addr", i), a.Addr, b.Addr)
		diff(fmt.Sprintf("listen[%d].client_auth", i), a.ClientAuth, b.ClientAuth)
		diff(fmt.Sprintf("listen[%d].unauthenticated_trunk", i), a.UnauthenticatedTrunk, b.UnauthenticatedTrunk)
	}

	diff("tls.cert", old.TLS.Cert, next.TLS.Cert)
	diff("tls.key", old.TLS.Key, next.TLS.Key)
	diff("tls.ca", old.TLS.CA, next.TLS.CA)
	diff("tls.min_version", old.TLS.MinVersion, next.TLS.MinVersion)
	diff("tls.handshake_timeout", old.TLS.HandshakeTimeout, next.TLS.HandshakeTimeout)

	diff("dns.servers", old.DNS.Servers, next.DNS.Servers)
	diff("dns.timeout", old.DNS.Timeout, next.DNS.Timeout)
	diff("dns.attempts", old.DNS.Attempts, next.DNS.Attempts)
	diff("dns.min_ttl", old.DNS.MinTTL, next.DNS.MinTTL)
	diff("dns.max_ttl", old.DNS.MaxTTL, next.DNS.MaxTTL)
	diff("dns.negative_ttl", old.DNS.NegativeTTL, next.DNS.NegativeTTL)
	diff("dns.down_time", old.DNS.DownTime, next.DNS.DownTime)

	diff("sip.keepalive_interval", old.SIP.KeepaliveInterval, next.SIP.KeepaliveInterval)
	diff("sip.max_message_size", old.SIP.MaxMessageSize, next.SIP.MaxMessageSize)

	diff("media.port_range", old.Media.PortRange, next.Media.PortRange)
	diff("media.bind", old.Media.Bind, next.Media.Bind)
	diff("media.timeout", old.Media.Timeout, next.Media.Timeout)
	diff("media.strict_source", old.Media.StrictSource, next.Media.StrictSource)
	diff("media.learning", old.Media.Learning, next.Media.Learning)
	diff("media.dscp.audio", old.Media.DSCP.Audio, next.Media.DSCP.Audio)
	diff("media.dscp.video", old.Media.DSCP.Video, next.Media.DSCP.Video)
	diff("media.dscp.signalling", old.Media.DSCP.Signalling, next.Media.DSCP.Signalling)
	diff("media.fastpath", old.Media.Fastpath, next.Media.Fastpath)
	diff("media.socket_cache", old.Media.SocketCache, next.Media.SocketCache)

	diff("log.format", old.Log.Format, next.Log.Format)
	diff("metrics.listen", old.Metrics.Listen, next.Metrics.Listen)
	diff("metrics.pprof", old.Metrics.Pprof, next.Metrics.Pprof)
	diff("cdr.file", old.CDR.File, next.CDR.File)
	diff("cdr.sync_interval", old.CDR.SyncInterval, next.CDR.SyncInterval)
	out = append(out, traceStartOnlyChanges(old, next)...)
	out = append(out, clusterStartOnlyChanges(old, next)...)
	return out
}
