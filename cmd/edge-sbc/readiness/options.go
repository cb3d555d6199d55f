package readiness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emiago/sipgo/sip"
)

// pong is the final response to an OPTIONS ping.
type pong struct {
	code   int
	reason string
	rtt    time.Duration
}

// sendOptions sends an out-of-dialog OPTIONS for uri over conn, as
// node fqdn, and waits for its final response (provisional responses and
// requests from the peer are skipped). ctx bounds the whole exchange.
func sendOptions(ctx context.Context, conn net.Conn, fqdn string, uri sip.Uri) (pong, error) {
	callID, err := randomToken()
	if err != nil {
		return pong{}, err
	}
	callID += "@" + fqdn
	req := newOptions(fqdn, sip.Uri{Scheme: "sips", User: uri.User, Host: uri.Host, Port: uri.Port}, callID)

	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return pong{}, fmt.Errorf("write OPTIONS: %w", err)
	}
	res, err := readResponse(conn, callID)
	if err != nil {
		return pong{}, err
	}
	return pong{code: res.StatusCode, reason: res.Reason, rtt: time.Since(start)}, nil
}

// newOptions builds the OPTIONS request with sipgo's types.
func newOptions(fqdn string, ruri sip.Uri, callID string) *sip.Request {
	req := sip.NewRequest(sip.OPTIONS, ruri)
	vp := sip.NewParams()
	vp.Add("branch", sip.GenerateBranch())
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: fqdn, Params: vp})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fp := sip.NewParams()
	fp.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sips", User: "edge-sbc-check", Host: fqdn}, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: ruri, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	req.AppendHeader(sip.NewHeader("User-Agent", "edge-sbc check"))
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	return req
}

// errNoResponse: the connection ended before a final response arrived.
var errNoResponse = errors.New("connection ended without a final response")

// readResponse reads SIP messages from conn with sipgo's stream parser
// until the final response with Call-ID callID.
func readResponse(conn net.Conn, callID string) (*sip.Response, error) {
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	buf := make([]byte, 4096)
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			_, _ = ps.Write(buf[:n])
			for {
				msg, _, err := ps.ParseNext()
				if errors.Is(err, io.ErrUnexpectedEOF) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("parse response: %w", err)
				}
				res, ok := msg.(*sip.Response)
				if !ok || res.IsProvisional() {
					continue
				}
				if id := res.CallID(); id == nil || string(*id) != callID {
					continue
				}
				return res, nil
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil, errNoResponse
			}
			return nil, fmt.Errorf("read response: %w", rerr)
		}
	}
}

// randomToken returns 16 random bytes in hex.
func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random Call-ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
