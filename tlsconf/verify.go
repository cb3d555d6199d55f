package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reason is a stable, metric-friendly classification of a TLS failure.
type Reason string

// Reasons returned by Classify and carried by VerifyError.
const (
	ReasonExpired       Reason = "expired"        // peer certificate (or its chain) has expired
	ReasonNotYetValid   Reason = "not_yet_valid"  // peer certificate is not valid yet (clock skew?)
	ReasonUnknownCA     Reason = "unknown_ca"     // chain does not lead to a trusted root
	ReasonWrongName     Reason = "wrong_name"     // certificate does not match the expected identity
	ReasonNoCertificate Reason = "no_certificate" // peer sent no certificate where one is required
	ReasonBadUsage      Reason = "bad_usage"      // key usage / extended key usage not allowed
	ReasonHandshake     Reason = "handshake"      // any other handshake failure
)

// VerifyError is returned by the verification of NewClientConfig (and thus
// by the client handshake) when the server certificate is not acceptable.
type VerifyError struct {
	Reason Reason
	Detail string // human explanation, safe for logs
	Err    error  // underlying error, may be nil
}

// Error returns "tls peer verification failed (reason): detail", using the
// underlying error's text when Detail is empty.
func (e *VerifyError) Error() string {
	msg := "tls peer verification failed (" + string(e.Reason) + ")"
	switch {
	case e.Detail != "":
		msg += ": " + e.Detail
	case e.Err != nil:
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *VerifyError) Unwrap() error { return e.Err }

// Classify maps an error from a TLS handshake or certificate verification,
// on either side of the connection, to a Reason and a short human
// explanation for log lines. It understands the *HandshakeError of Dial
// (through what it wraps), *VerifyError, the crypto/x509
// verification errors (possibly wrapped in *tls.CertificateVerificationError),
// TLS alerts received from the peer, tls.RecordHeaderError, io.EOF,
// timeouts and resets. Unrecognised errors map to ReasonHandshake with the
// error text. A nil error returns ("", "").
func Classify(err error) (Reason, string) {
	if err == nil {
		return "", ""
	}
	if ve, ok := errors.AsType[*VerifyError](err); ok {
		d := ve.Detail
		if d == "" {
			d = ve.Error()
		}
		return ve.Reason, d
	}
	if r, d, ok := classifyX509(err); ok {
		return r, d
	}
	if r, d, ok := classifyAlert(err); ok {
		return r, d
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonHandshake, "peer is not speaking TLS (plain SIP or wrong port?)"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoCertificate, "client did not send a certificate but one is required"
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version not supported"):
		return ReasonHandshake, "no common TLS version (peer below our minimum?)"
	case strings.Contains(msg, "no cipher suite supported"), strings.Contains(msg, "no mutually supported"):
		return ReasonHandshake, "no common cipher suite or parameters"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonHandshake, "connection closed by peer during handshake (peer may have rejected our certificate or parameters)"
	case errors.Is(err, syscall.ECONNRESET):
		return ReasonHandshake, "connection reset by peer during handshake"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return ReasonHandshake, "handshake timed out"
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonHandshake, "handshake timed out"
	}
	return ReasonHandshake, msg
}

func classifyX509(err error) (Reason, string, bool) {
	if ce, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		switch ce.Reason {
		case x509.Expired:
			if strings.Contains(ce.Detail, "is before") {
				return ReasonNotYetValid, "certificate is not valid yet: " + ce.Detail, true
			}
			return ReasonExpired, "certificate has expired: " + ce.Detail, true
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return ReasonBadUsage, "certificate extended key usage does not allow this use: " + ce.Error(), true
		case x509.NotAuthorizedToSign, x509.TooManyIntermediates, x509.NameConstraintsWithoutSANs, x509.CANotAuthorizedForThisName:
			return ReasonUnknownCA, "certificate chain is not acceptable: " + ce.Error(), true
		default:
			return ReasonHandshake, ce.Error(), true
		}
	}
	if ue, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return ReasonUnknownCA, "certificate is not signed by a trusted CA: " + ue.Error(), true
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		return ReasonWrongName, he.Error(), true
	}
	return "", "", false
}

// alertInfo maps an alert received from the peer. The peer's alert only
// tells us what the peer disliked about us.
func alertInfo(code uint8) (Reason, string) {
	switch code {
	case 45:
		return ReasonExpired, "peer says our certificate has expired"
	case 48:
		return ReasonUnknownCA, "peer does not trust the CA of our certificate"
	case 116:
		return ReasonNoCertificate, "peer requires a client certificate and we sent none"
	case 42, 43, 46:
		return ReasonHandshake, "peer rejected our certificate (" + tls.AlertError(code).Error() + ")"
	case 70:
		return ReasonHandshake, "no common TLS version (peer refused our version)"
	case 40:
		return ReasonHandshake, "peer aborted the handshake (no common parameters)"
	case 71:
		return ReasonHandshake, "peer requires stronger security parameters"
	case 112:
		return ReasonHandshake, "peer does not recognise the server name we sent (SNI)"
	default:
		return ReasonHandshake, "peer sent alert: " + tls.AlertError(code).Error()
	}
}

func classifyAlert(err error) (Reason, string, bool) {
	if ae, ok := errors.AsType[tls.AlertError](err); ok {
		r, d := alertInfo(uint8(ae))
		return r, d, true
	}
	// Alerts received on a tls.Conn are reported as a *net.OpError with
	// Op "remote error" wrapping an unexported alert type whose text equals
	// that of tls.AlertError.
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" && oe.Err != nil {
		text := oe.Err.Error()
		for code := 0; code <= 255; code++ {
			if text == tls.AlertError(uint8(code)).Error() {
				r, d := alertInfo(uint8(code))
				return r, d, true
			}
		}
		return ReasonHandshake, "peer sent alert: " + text, true
	}
	return "", "", false
}
