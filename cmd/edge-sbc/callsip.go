package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The signalling side of `edge-sbc call`: one INVITE dialog over one TLS
// connection, with sipgo's message types and stream parser.

// sipConn reads SIP messages from a connection on its own goroutine, which
// ends when the connection is closed (close waits for it). Writes come from
// one goroutine, the call's.
type sipConn struct {
	conn net.Conn
	msgs chan sip.Message
	done chan struct{}

	mu  sync.Mutex
	err error // why reading ended
}

func newSIPConn(conn net.Conn) *sipConn {
	c := &sipConn{conn: conn, msgs: make(chan sip.Message, 32), done: make(chan struct{})}
	go c.read()
	return c
}

func (c *sipConn) read() {
	defer close(c.done)
	defer close(c.msgs)
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	buf := make([]byte, 8192)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			_, _ = ps.Write(buf[:n])
			for {
				msg, _, perr := ps.ParseNext()
				// io.EOF: no complete start line buffered yet.
				if errors.Is(perr, io.ErrUnexpectedEOF) || errors.Is(perr, io.EOF) {
					break
				}
				if perr != nil {
					c.setErr(fmt.Errorf("parse SIP: %w", perr))
					return
				}
				c.msgs <- msg
			}
		}
		if err != nil {
			c.setErr(err)
			return
		}
	}
}

func (c *sipConn) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// readErr returns why the reader stopped (after msgs is closed).
func (c *sipConn) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil || c.err == io.EOF {
		return errors.New("the far end closed the connection")
	}
	return c.err
}

func (c *sipConn) send(m sip.Message) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, m.String()); err != nil {
		return fmt.Errorf("send %s: %w", startLine(m), err)
	}
	return nil
}

// close closes the connection and waits for the reader.
func (c *sipConn) close() {
	_ = c.conn.Close()
	for range c.msgs { // unblock the reader if it waits on a full channel
	}
	<-c.done
}

// startLine is a message's first line, for reports.
func startLine(m sip.Message) string {
	switch v := m.(type) {
	case *sip.Request:
		return v.Method.String() + " " + v.Recipient.String()
	case *sip.Response:
		return strconv.Itoa(v.StatusCode) + " " + v.Reason
	}
	return "?"
}

// uacDialog is the caller's side of the test call.
type uacDialog struct {
	fqdn    string
	local   string // host:port of our end of the connection (Via, Contact)
	from    sip.Uri
	to      sip.Uri
	fromTag string
	toTag   string
	callID  string
	cseq    uint32
	target  sip.Uri   // remote target (Contact of the 2xx)
	routes  []sip.Uri // route set (Record-Route of the 2xx, reversed)
	invite  *sip.Request
}

func newUACDialog(fqdn, local string, ruri sip.Uri) (*uacDialog, error) {
	id, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	return &uacDialog{
		fqdn: fqdn, local: local, callID: id + "@" + fqdn, cseq: 1, target: ruri,
		from:    sip.Uri{Scheme: "sips", User: callMediaUser, Host: fqdn},
		to:      sip.Uri{Scheme: "sips", User: ruri.User, Host: ruri.Host, Port: ruri.Port},
		fromTag: sip.GenerateTagN(16),
	}, nil
}

func (d *uacDialog) via() *sip.ViaHeader {
	host, port, _ := net.SplitHostPort(d.local)
	p, _ := strconv.Atoi(port)
	vp := sip.NewParams()
	vp.Add("branch", sip.GenerateBranch())
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: host, Port: p, Params: vp}
}

func (d *uacDialog) contact() *sip.ContactHeader {
	host, port, _ := net.SplitHostPort(d.local)
	p, _ := strconv.Atoi(port)
	up := sip.NewParams()
	up.Add("transport", "tls")
	return &sip.ContactHeader{Address: sip.Uri{Scheme: "sips", User: callMediaUser, Host: host, Port: p, UriParams: up}}
}

// request builds a request of the dialog (INVITE: the initial one).
func (d *uacDialog) request(method sip.RequestMethod, cseq uint32) *sip.Request {
	req := sip.NewRequest(method, d.target)
	req.AppendHeader(d.via())
	for _, r := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fp := sip.NewParams()
	fp.Add("tag", d.fromTag)
	req.AppendHeader(&sip.FromHeader{DisplayName: "edge-sbc test call", Address: d.from, Params: fp})
	tp := sip.NewParams()
	if d.toTag != "" {
		tp.Add("tag", d.toTag)
	}
	req.AppendHeader(&sip.ToHeader{Address: d.to, Params: tp})
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	if method == sip.INVITE {
		req.AppendHeader(d.contact())
		req.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", "edge-sbc call "+version))
	return req
}

func (d *uacDialog) newInvite(sdp []byte) *sip.Request {
	req := d.request(sip.INVITE, d.cseq)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdp)
	d.invite = req
	return req
}

// established takes the dialog's state from the 2xx (RFC 3261 12.1.2).
func (d *uacDialog) established(res *sip.Response) {
	if to := res.To(); to != nil {
		d.toTag, _ = to.Params.Get("tag")
	}
	if ct := res.Contact(); ct != nil {
		d.target = ct.Address
	}
	var rs []sip.Uri
	for _, h := range res.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			rs = append(rs, rr.Address)
			continue
		}
		for _, v := range strings.Split(h.Value(), ",") {
			var u sip.Uri
			if err := sip.ParseUri(strings.Trim(strings.TrimSpace(v), "<>"), &u); err == nil {
				rs = append(rs, u)
			}
		}
	}
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	d.routes = rs
}

// ack2xx is the ACK of the 2xx (a new transaction, CSeq of the INVITE).
func (d *uacDialog) ack2xx() *sip.Request {
	req := d.request(sip.ACK, d.invite.CSeq().SeqNo)
	req.SetBody(nil)
	return req
}

// ackNon2xx is the ACK of a non-2xx final response: the INVITE's branch
// and Request-URI, the response's To (RFC 3261 17.1.1.3).
func (d *uacDialog) ackNon2xx(res *sip.Response) *sip.Request {
	inv := d.invite
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

// cancel is the CANCEL of the INVITE (RFC 3261 9.1).
func (d *uacDialog) cancel() *sip.Request {
	inv := d.invite
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

func (d *uacDialog) bye() *sip.Request {
	d.cseq++
	req := d.request(sip.BYE, d.cseq)
	req.SetBody(nil)
	return req
}

// ours reports whether m belongs to the dialog (its Call-ID).
func (d *uacDialog) ours(m sip.Message) bool {
	id := m.CallID()
	return id != nil && id.Value() == d.callID
}

// isResponseTo reports whether res answers method.
func isResponseTo(res *sip.Response, method sip.RequestMethod) bool {
	cs := res.CSeq()
	return cs != nil && cs.MethodName == method
}

// reply answers a request of the far end, with an SDP body when given.
func reply(req *sip.Request, code int, reason string, sdp []byte, contact *sip.ContactHeader) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if contact != nil {
		res.AppendHeader(contact)
	}
	if len(sdp) > 0 {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.SetBody(sdp)
	}
	return res
}
