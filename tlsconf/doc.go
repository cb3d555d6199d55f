// Package tlsconf builds the crypto/tls configurations used by edge-sbc for
// SIP over TLS (RFC 5630, RFC 5922).
//
// The package owns three things:
//
//   - A [Store] holding our certificate chain and private key plus the root
//     certificates trusted for peers. It is loaded from PEM files, can be
//     reloaded atomically ([Store.Reload], [Store.Watch]) and keeps serving
//     the previous material when new files are broken.
//   - Config builders: [NewServerConfig] for the listeners (TCP 5061 with an
//     optional client certificate, TCP 5062 with a required one) and
//     [NewClientConfig] for outbound connections to a named peer. Both
//     builders read the Store at handshake time, so a reload applies to
//     the next handshake without rebuilding. The SIP layer accepts
//     inbound connections itself and hands the config to tls.Server;
//     outbound, [Dial] is the one connect + handshake + identity check,
//     used by the B2BUA toward its trunks and by `edge-sbc check` to test
//     them, so that both refuse a peer for the same [Reason].
//   - Peer identity: [MatchIdentity] is the one check of a certificate
//     against a SIP identity (DNS SANs with a single leftmost wildcard
//     label, sip:/sips: URI SANs, the CN of a certificate without SANs),
//     used by [NewClientConfig] outbound and by [MatchTrunk] to map an
//     inbound peer to its trunk; [Identities] lists the names for logs.
//     Error classification ([Classify], [VerifyError]) serves log lines
//     and metrics. [ParseIPLiteral] is the one test of whether a host is
//     an IP address (no SNI for those; IP SANs for those).
//
// The TLS floor is defined once, in [MinVersionDefault]: TLS 1.2 minimum,
// TLS 1.3 preferred (it is negotiated whenever both sides support it), and
// only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305) for
// TLS 1.2.
//
// devcert.go provides [WriteDevPKI] and [IssueDevLeaf] to create a
// development CA and leaf certificates for labs and tests.
//
// All exported functions are safe for concurrent use unless their doc comment
// says otherwise. The package has no mutable package-level state, does not
// log, and never puts private key material in errors.
package tlsconf
