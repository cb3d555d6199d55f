package siptest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Branch is a new RFC 3261 branch.
func Branch() string { return sip.RFC3261BranchMagicCookie + token(8) }

// Tag is a new tag.
func Tag() string { return token(6) }

// NewInvite builds an INVITE from the peer to ruri (sips:user@host) with
// an SDP body (nil: a delayed offer).
func (p *Peer) NewInvite(ruri string, sdp []byte, extra ...sip.Header) *sip.Request {
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		p.t.Fatalf("ruri %q: %v", ruri, err)
	}
	req := sip.NewRequest(sip.INVITE, u)
	req.AppendHeader(p.via())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fp := sip.NewParams()
	fp.Add("tag", Tag())
	req.AppendHeader(&sip.FromHeader{DisplayName: "Alice", Address: sip.Uri{Scheme: "sips", User: "alice", Host: "caller.test"}, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sips", User: u.User, Host: u.Host}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(token(10))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(p.contact())
	for _, h := range extra {
		req.AppendHeader(h)
	}
	setSDP(req, sdp)
	return req
}

func (p *Peer) via() *sip.ViaHeader {
	host, port, _ := net.SplitHostPort(p.local)
	n, _ := strconv.Atoi(port)
	params := sip.NewParams()
	params.Add("branch", Branch())
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: host, Port: n, Params: params}
}

func (p *Peer) contact() *sip.ContactHeader {
	host, port, _ := net.SplitHostPort(p.local)
	n, _ := strconv.Atoi(port)
	params := sip.NewParams()
	params.Add("transport", "tls")
	return &sip.ContactHeader{Address: sip.Uri{Scheme: "sips", User: p.Name, Host: host, Port: n, UriParams: params}}
}

func setSDP(m interface {
	sip.Message
	RemoveHeader(string) bool
}, sdp []byte) {
	for m.RemoveHeader("Content-Type") {
	}
	if len(sdp) == 0 {
		m.SetBody(nil)
		return
	}
	m.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	m.SetBody(sdp)
}

// Reply builds the peer's response to req: To tag (for code > 100), its
// Contact on 1xx/2xx of INVITE, UPDATE and PRACK-less dialogs, and a body.
func (p *Peer) Reply(req *sip.Request, code int, toTag string, sdp []byte, extra ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, fmt.Sprintf("Status %d", code), nil)
	if to := res.To(); to != nil && code > 100 {
		to.Params.Remove("tag")
		if toTag != "" {
			to.Params.Add("tag", toTag)
		}
	}
	if code > 100 && code < 300 && (req.IsInvite() || req.Method == sip.UPDATE) {
		res.AppendHeader(p.contact())
	}
	for _, h := range extra {
		res.AppendHeader(h)
	}
	setSDP(res, sdp)
	return res
}

// Dialog is one dialog as a scripted peer keeps it.
type Dialog struct {
	p         *Peer
	CallID    string
	LocalTag  string
	RemoteTag string
	Local     sip.Uri
	Remote    sip.Uri
	Target    sip.Uri
	CSeq      uint32
}

// UACDialog is the caller's dialog after the 2xx (or 18x) res to inv.
func (p *Peer) UACDialog(inv *sip.Request, res *sip.Response) *Dialog {
	d := &Dialog{p: p, CallID: inv.CallID().Value(), Local: inv.From().Address, Remote: inv.To().Address, CSeq: inv.CSeq().SeqNo}
	d.LocalTag, _ = inv.From().Params.Get("tag")
	d.RemoteTag, _ = res.To().Params.Get("tag")
	if ct := res.Contact(); ct != nil {
		d.Target = ct.Address
	}
	return d
}

// UASDialog is the callee's dialog for the INVITE it answers with tag.
func (p *Peer) UASDialog(inv *sip.Request, tag string) *Dialog {
	d := &Dialog{p: p, CallID: inv.CallID().Value(), LocalTag: tag, Local: inv.To().Address, Remote: inv.From().Address, CSeq: 100}
	d.RemoteTag, _ = inv.From().Params.Get("tag")
	if ct := inv.Contact(); ct != nil {
		d.Target = ct.Address
	}
	return d
}

// On is the dialog as peer p continues it (a new connection of the same
// party: its requests carry p's Via and Contact).
func (d *Dialog) On(p *Peer) *Dialog {
	c := *d
	c.p = p
	return &c
}

// Request builds an in-dialog request (CSeq incremented except for ACK,
// which takes cseq).
func (d *Dialog) Request(method sip.RequestMethod, sdp []byte, cseq ...uint32) *sip.Request {
	n := d.CSeq
	if method == sip.ACK || method == sip.CANCEL {
		if len(cseq) > 0 {
			n = cseq[0]
		}
	} else {
		d.CSeq++
		n = d.CSeq
	}
	req := sip.NewRequest(method, d.Target)
	req.AppendHeader(d.p.via())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fp := sip.NewParams()
	fp.Add("tag", d.LocalTag)
	req.AppendHeader(&sip.FromHeader{Address: d.Local, Params: fp})
	tp := sip.NewParams()
	tp.Add("tag", d.RemoteTag)
	req.AppendHeader(&sip.ToHeader{Address: d.Remote, Params: tp})
	cid := sip.CallIDHeader(d.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: n, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(d.p.contact())
	}
	setSDP(req, sdp)
	return req
}

// Cancel builds the CANCEL of inv (RFC 3261 §9.1).
func Cancel(inv *sip.Request) *sip.Request {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	req.SetBody(nil)
	return req
}

// AckNon2xx builds the ACK of a non-2xx final response (same branch).
func AckNon2xx(inv *sip.Request, res *sip.Response) *sip.Request {
	req := sip.NewRequest(sip.ACK, inv.Recipient)
	req.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(res.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	req.SetBody(nil)
	return req
}

// SDP is an audio offer or answer (plain RTP/AVP PCMU) on 127.0.0.1:port;
// version is the o= version; dir is a direction attribute ("" sendrecv).
func SDP(port int, version int, dir string) []byte {
	if dir == "" {
		dir = "sendrecv"
	}
	return []byte(fmt.Sprintf("v=0\r\no=- 4711 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=%s\r\n", version, port, dir))
}

// MediaAddr returns the audio address of an SDP body (c= and m= of the
// first m-line).
func MediaAddr(t testing.TB, body []byte) netip.AddrPort {
	t.Helper()
	var addr netip.Addr
	port := -1
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "c=IN IP4 ") && !addr.IsValid() {
			addr, _ = netip.ParseAddr(strings.TrimPrefix(l, "c=IN IP4 "))
		}
		if strings.HasPrefix(l, "m=") && port < 0 {
			f := strings.Fields(l)
			if len(f) > 1 {
				port, _ = strconv.Atoi(f[1])
			}
		}
	}
	if !addr.IsValid() || port < 0 {
		t.Fatalf("no media address in SDP:\n%s", body)
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// RTP is a media endpoint on 127.0.0.1.
type RTP struct {
	t    testing.TB
	Conn *net.UDPConn
	ssrc uint32
	seq  uint16
}

// NewRTP opens a UDP socket on 127.0.0.1:0.
func NewRTP(t testing.TB) *RTP {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &RTP{t: t, Conn: c, ssrc: uint32(time.Now().UnixNano())}
}

// Port is the socket's port.
func (r *RTP) Port() int { return r.Conn.LocalAddr().(*net.UDPAddr).Port }

// Send sends n RTP packets to to.
func (r *RTP) Send(to netip.AddrPort, n int) {
	r.t.Helper()
	for range n {
		r.seq++
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: r.seq, Timestamp: uint32(r.seq) * 160, SSRC: r.ssrc}, Payload: make([]byte, 160)}
		b, _ := pkt.Marshal()
		if _, err := r.Conn.WriteToUDPAddrPort(b, to); err != nil {
			r.t.Fatalf("rtp send: %v", err)
		}
	}
}

// Received counts the RTP packets that arrive within d.
func (r *RTP) Received(d time.Duration) int {
	buf := make([]byte, 2048)
	n := 0
	deadline := time.Now().Add(d)
	for {
		_ = r.Conn.SetReadDeadline(deadline)
		if _, _, err := r.Conn.ReadFromUDPAddrPort(buf); err != nil {
			return n
		}
		n++
	}
}

// Flows sends packets from r to to every 20 ms until the peer receives
// at least one or d passes; it reports whether media got through.
func (r *RTP) Flows(to netip.AddrPort, peer *RTP, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.Send(to, 1)
		if peer.Received(20*time.Millisecond) > 0 {
			return true
		}
	}
	return false
}
