package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// `edge-sbc call` places a real test call with the SBC's identity, directly
// to a trunk's targets (not through a running SBC): it resolves the trunk's
// URI as the SBC does (RFC 3263, dnsresolve), connects with the SBC's
// certificate and verifies the trunk identity (tlsconf), sends an INVITE
// for the given sips: URI offering SRTP (SDES AES_CM_128_HMAC_SHA1_80,
// pion/srtp), streams a 1 kHz PCMU tone for --duration, receives what comes
// back (an echo of our packets is recognised: it is encrypted with our own
// key), hangs up and reports setup, the responses, media both ways, the
// round trip (RTCP), jitter, loss and MOS against the Webex thresholds.

// errCallFailed makes `edge-sbc call` exit 1.
var errCallFailed = errors.New("call: the test call failed")

// callReport is the outcome of a test call (--json prints it).
type callReport struct {
	URI       string          `json:"uri"`
	Trunk     string          `json:"trunk"`
	Targets   []targetAttempt `json:"targets"`
	Responses []responseSeen  `json:"responses"`
	Answered  bool            `json:"answered"`
	FinalCode int             `json:"final_code,omitempty"`
	SetupMs   float64         `json:"setup_ms,omitempty"`
	Media     *callMediaView  `json:"media,omitempty"`
	Hangup    string          `json:"hangup,omitempty"`
	Checks    []callCheck     `json:"checks"`
	// Result is "pass", "degraded" (a Webex threshold is exceeded, MOS
	// still >= 3.5) or "fail".
	Result   string   `json:"result"`
	Failures []string `json:"failures,omitempty"`
}

type targetAttempt struct {
	Host   string `json:"host"`
	Addr   string `json:"addr"`
	Result string `json:"result"`
}

type responseSeen struct {
	Code    int     `json:"code"`
	Reason  string  `json:"reason"`
	AfterMs float64 `json:"after_ms"`
}

type callMediaView struct {
	Codec        string  `json:"codec"`
	SRTP         string  `json:"srtp"`
	Local        string  `json:"local"`
	Remote       string  `json:"remote"`
	DurationSec  float64 `json:"duration_s"`
	SentRTP      uint64  `json:"sent_rtp"`
	SentRTCP     uint64  `json:"sent_rtcp"`
	ReceivedRTP  uint64  `json:"received_rtp"`
	ReceivedRTCP uint64  `json:"received_rtcp"`
	Echo         bool    `json:"echo"`
	AuthFailures uint64  `json:"auth_failures"`
	Expected     uint64  `json:"expected"`
	Lost         uint64  `json:"lost"`
	LossPercent  float64 `json:"loss_percent"`
	JitterMs     float64 `json:"jitter_ms"`
	MaxJitterMs  float64 `json:"max_jitter_ms"`
	// RTTMs is the round trip from RTCP; 0 when not measured.
	RTTMs     float64 `json:"rtt_ms,omitempty"`
	RTTSource string  `json:"rtt_source,omitempty"`
	// OneWayDelayMs is RTT/2, or the default the MOS assumes.
	OneWayDelayMs float64 `json:"one_way_delay_ms"`
	DelayAssumed  bool    `json:"delay_assumed"`
	R             float64 `json:"r"`
	MOS           float64 `json:"mos"`
}

// callCheck is one measure against its Webex threshold.
type callCheck struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Threshold string `json:"threshold"`
	Status    string `json:"status"` // ok, warn, fail, not measured
}

type callFlags struct {
	path, trunk, uri       string
	duration, setupTimeout time.Duration
	asJSON, expectMedia    bool
}

// parseCallFlags accepts the flags before and after the URI.
func parseCallFlags(args []string) (callFlags, error) {
	var f callFlags
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.StringVar(&f.path, "config", "", "configuration file: the SBC's certificate, trust anchors, DNS and trunks")
	fs.StringVar(&f.trunk, "trunk", "", "trunk whose targets (its uri) are called, with its identity")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long the tone is sent once answered")
	fs.DurationVar(&f.setupTimeout, "timeout", 30*time.Second, "how long to wait for the answer (then CANCEL)")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&f.expectMedia, "expect-media", true, "fail when no media comes back (an echo service or a person answers); false for a far end that only listens")
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return f, err
		}
		if fs.NArg() == 0 {
			break
		}
		if f.uri != "" {
			return f, fmt.Errorf("call: one URI only (%q and %q)", f.uri, fs.Arg(0))
		}
		f.uri = fs.Arg(0)
		rest = fs.Args()[1:]
	}
	switch {
	case f.path == "" || f.trunk == "" || f.uri == "":
		return f, errors.New("call: --config FILE, --trunk NAME and a sips:user@host URI are required")
	case f.duration <= 0 || f.setupTimeout <= 0:
		return f, errors.New("call: --duration and --timeout must be positive")
	}
	return f, nil
}

// cmdCall runs `edge-sbc call`.
func cmdCall(args []string, stdout io.Writer) error {
	f, err := parseCallFlags(args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(f.path)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	var trunk *config.Trunk
	for i := range cfg.Trunks {
		if cfg.Trunks[i].Name == f.trunk {
			trunk = &cfg.Trunks[i]
		}
	}
	if trunk == nil {
		return fmt.Errorf("call: no trunk %q in %s", f.trunk, f.path)
	}
	if trunk.URI == "" {
		return fmt.Errorf("call: trunk %q has no uri: the SBC never calls it", f.trunk)
	}
	var ruri sip.Uri
	if err := sip.ParseUri(f.uri, &ruri); err != nil {
		return fmt.Errorf("call: %q: %w", f.uri, err)
	}
	if !strings.EqualFold(ruri.Scheme, "sips") || ruri.User == "" || ruri.Host == "" {
		return fmt.Errorf("call: %q: a sips:user@host URI is required (Webex: SIPS only)", f.uri)
	}
	ctx, stop := signalContext(context.Background())
	defer stop()
	rep := placeCall(ctx, cfg, *trunk, ruri, f)
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = writeCallReport(stdout, rep)
	}
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	if rep.Result == "fail" {
		return errCallFailed
	}
	return nil
}

// placeCall makes the call and always returns a report.
func placeCall(ctx context.Context, cfg *config.Config, tr config.Trunk, ruri sip.Uri, f callFlags) *callReport {
	rep := &callReport{URI: ruri.String(), Trunk: tr.Name, Targets: []targetAttempt{}, Responses: []responseSeen{}}
	fail := func(format string, a ...any) *callReport {
		rep.Failures = append(rep.Failures, fmt.Sprintf(format, a...))
		rep.finish(f.expectMedia)
		return rep
	}
	conn, err := dialTrunk(ctx, cfg, tr, rep)
	if err != nil {
		return fail("%v", err)
	}
	sc := newSIPConn(conn)
	defer sc.close()

	lhost, _, _ := net.SplitHostPort(conn.LocalAddr().String())
	bind, adv, err := mediaAddresses(cfg, tr, lhost)
	if err != nil {
		return fail("%v", err)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return fail("media socket on %s: %v", bind, err)
	}
	defer udp.Close()
	lport := udp.LocalAddr().(*net.UDPAddr).Port
	advAP := netip.AddrPortFrom(adv, uint16(lport))
	key, err := newSDESKey()
	if err != nil {
		return fail("%v", err)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	offer, err := offerSDP(advAP, key, be64(idb[:])>>2)
	if err != nil {
		return fail("%v", err)
	}
	dlg, err := newUACDialog(cfg.Node.FQDN, conn.LocalAddr().String(), ruri)
	if err != nil {
		return fail("%v", err)
	}
	start := time.Now()
	if err := sc.send(dlg.newInvite(offer)); err != nil {
		return fail("%v", err)
	}

	// Setup: provisional responses, then the final one (CANCEL at --timeout).
	res, err := awaitFinal(ctx, sc, dlg, rep, start, f.setupTimeout)
	if err != nil {
		return fail("%v", err)
	}
	rep.FinalCode = res.StatusCode
	if !res.IsSuccess() {
		_ = sc.send(dlg.ackNon2xx(res))
		return fail("no answer: %d %s", res.StatusCode, res.Reason)
	}
	rep.Answered = true
	rep.SetupMs = ms(time.Since(start))
	dlg.established(res)
	if err := sc.send(dlg.ack2xx()); err != nil {
		return fail("%v", err)
	}
	ans, err := parseAnswer(res.Body())
	if err != nil {
		hangup(sc, dlg, rep)
		return fail("%v", err)
	}
	m, err := startMedia(udp, key, ans)
	if err != nil {
		hangup(sc, dlg, rep)
		return fail("%v", err)
	}
	mediaStart := time.Now()
	farBye := runDialog(ctx, sc, dlg, f.duration, offer)
	elapsed := time.Since(mediaStart)
	mr := m.stop()
	switch {
	case farBye != "":
		rep.Hangup = farBye
	default:
		hangup(sc, dlg, rep)
	}
	rep.Media = viewCallMedia(mr, ans, advAP, elapsed)
	if farBye != "" && elapsed < f.duration/2 {
		rep.Failures = append(rep.Failures, "the far end hung up early: "+farBye)
	}
	rep.finish(f.expectMedia && !ans.sendOnly)
	return rep
}

// dialTrunk resolves the trunk's URI and connects over TLS to the first
// target that completes a handshake verifying the trunk identity.
func dialTrunk(ctx context.Context, cfg *config.Config, tr config.Trunk, rep *callReport) (*tls.Conn, error) {
	store, err := tlsconf.LoadStore(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	minV, err := tlsconf.ParseMinVersion(cfg.TLS.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("tls.min_version: %w", err)
	}
	uri, err := config.ParseTrunkURI(tr.URI)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", tr.Name, err)
	}
	if uri.Port < 0 || uri.Port > 65535 {
		return nil, fmt.Errorf("trunk %s: %s: bad port", tr.Name, tr.URI)
	}
	res, err := dnsresolve.New(dnsresolve.Config{
		Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout, Attempts: cfg.DNS.Attempts,
	})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	targets, err := res.Resolve(rctx, uri.Host, uint16(uri.Port))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("trunk %s: resolve %s: %w", tr.Name, tr.URI, err)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("trunk %s: %s resolves to no target", tr.Name, tr.URI)
	}
	for _, t := range targets {
		a := targetAttempt{Host: t.Host, Addr: t.Addr.String()}
		conn, err := dialTarget(ctx, store, minV, tr, t)
		if err != nil {
			a.Result = err.Error()
			rep.Targets = append(rep.Targets, a)
			continue
		}
		cs := conn.ConnectionState()
		want := tr.Identity
		if want == "" {
			want = t.Host
		}
		a.Result = fmt.Sprintf("connected: %s %s, identity %q verified", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), want)
		rep.Targets = append(rep.Targets, a)
		return conn, nil
	}
	return nil, fmt.Errorf("trunk %s: no target of %s accepted a TLS connection", tr.Name, tr.URI)
}

func dialTarget(ctx context.Context, store *tlsconf.Store, minV uint16, tr config.Trunk, t dnsresolve.Target) (*tls.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(hctx, "tcp", t.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("TCP connect: %w", err)
	}
	conn := tls.Client(raw, tlsconf.NewClientConfig(store, t.Host, tr.Identity, minV))
	if err := conn.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		reason, detail := tlsconf.Classify(err)
		return nil, fmt.Errorf("TLS handshake failed: %s: %s", reason, detail)
	}
	return conn, nil
}

// mediaAddresses returns the address to bind the media socket on and the
// one to advertise in SDP: media.bind (the connection's local address when
// it is unspecified); advertised: the trunk's media_address, else
// node.public_ipv4, else the bound address.
func mediaAddresses(cfg *config.Config, tr config.Trunk, connLocal string) (bind, adv netip.Addr, err error) {
	bind, err = netip.ParseAddr(cfg.Media.Bind)
	if err != nil || bind.IsUnspecified() {
		if bind, err = netip.ParseAddr(connLocal); err != nil {
			return bind, adv, fmt.Errorf("media address: %w", err)
		}
	}
	bind = bind.Unmap()
	adv = bind
	for _, s := range []string{tr.MediaAddress, cfg.Node.PublicIPv4} {
		if a, err := netip.ParseAddr(s); err == nil {
			return bind, a, nil
		}
	}
	return bind, adv, nil
}

// awaitFinal waits for the INVITE's final response, noting the
// provisional ones; at timeout (or when ctx ends) it sends CANCEL and waits
// a little for the 487.
func awaitFinal(ctx context.Context, sc *sipConn, dlg *uacDialog, rep *callReport, start time.Time, timeout time.Duration) (*sip.Response, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	cancelled := false
	var grace <-chan time.Time
	stop := ctx.Done()
	for {
		select {
		case msg, ok := <-sc.msgs:
			if !ok {
				return nil, fmt.Errorf("no final response: %w", sc.readErr())
			}
			res, isRes := msg.(*sip.Response)
			if !isRes {
				if req, ok := msg.(*sip.Request); ok && !req.IsAck() {
					_ = sc.send(reply(req, 481, "Call/Transaction Does Not Exist", nil, nil))
				}
				continue
			}
			if !dlg.ours(res) || !isResponseTo(res, sip.INVITE) {
				continue
			}
			rep.Responses = append(rep.Responses, responseSeen{Code: res.StatusCode, Reason: res.Reason, AfterMs: ms(time.Since(start))})
			if res.IsProvisional() {
				continue
			}
			if cancelled && res.IsSuccess() {
				// The answer crossed our CANCEL: the call is up; end it.
				dlg.established(res)
				_ = sc.send(dlg.ack2xx())
				hangup(sc, dlg, rep)
				return nil, fmt.Errorf("no answer within %s (answered after the CANCEL)", timeout)
			}
			if cancelled {
				_ = sc.send(dlg.ackNon2xx(res))
				return nil, fmt.Errorf("no answer within %s: CANCEL sent, %d %s", timeout, res.StatusCode, res.Reason)
			}
			return res, nil
		case <-deadline.C:
			if !cancelled {
				cancelled = true
				_ = sc.send(dlg.cancel())
				grace = time.After(4 * time.Second)
			}
		case <-stop:
			stop = nil // once
			if !cancelled {
				cancelled = true
				_ = sc.send(dlg.cancel())
				grace = time.After(4 * time.Second)
			}
		case <-grace:
			return nil, fmt.Errorf("no answer within %s: CANCEL sent, no final response", timeout)
		}
	}
}

// runDialog keeps the answered call for d, answering the far end's
// in-dialog requests. It returns a description when the far end hung up
// (BYE or connection loss), "" when the time ran out or ctx ended.
func runDialog(ctx context.Context, sc *sipConn, dlg *uacDialog, d time.Duration, offer []byte) string {
	t := time.NewTimer(d)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-t.C:
			return ""
		case <-ctx.Done():
			return ""
		case msg, ok := <-sc.msgs:
			if !ok {
				return fmt.Sprintf("connection lost after %s: %v", time.Since(start).Round(time.Millisecond), sc.readErr())
			}
			switch m := msg.(type) {
			case *sip.Response:
				// A retransmitted 2xx of the INVITE: our ACK was lost.
				if dlg.ours(m) && isResponseTo(m, sip.INVITE) && m.IsSuccess() {
					_ = sc.send(dlg.ack2xx())
				}
			case *sip.Request:
				if !dlg.ours(m) {
					if !m.IsAck() {
						_ = sc.send(reply(m, 481, "Call/Transaction Does Not Exist", nil, nil))
					}
					continue
				}
				switch m.Method {
				case sip.ACK:
				case sip.BYE:
					_ = sc.send(reply(m, 200, "OK", nil, nil))
					return fmt.Sprintf("BYE from the far end after %s", time.Since(start).Round(time.Millisecond))
				case sip.INVITE, sip.UPDATE:
					// A session refresh: answer with the same session.
					_ = sc.send(reply(m, 200, "OK", offer, dlg.contact()))
				case sip.OPTIONS, sip.INFO, sip.NOTIFY:
					_ = sc.send(reply(m, 200, "OK", nil, nil))
				default:
					_ = sc.send(reply(m, 501, "Not Implemented", nil, nil))
				}
			}
		}
	}
}

// hangup sends BYE and waits up to 5 s for its final response.
func hangup(sc *sipConn, dlg *uacDialog, rep *callReport) {
	bye := dlg.bye()
	if err := sc.send(bye); err != nil {
		rep.Hangup = "BYE not sent: " + err.Error()
		return
	}
	start := time.Now()
	limit := time.After(5 * time.Second)
	for {
		select {
		case msg, ok := <-sc.msgs:
			if !ok {
				rep.Hangup = "BYE sent; connection closed before its response"
				return
			}
			res, isRes := msg.(*sip.Response)
			if !isRes || !dlg.ours(res) || !isResponseTo(res, sip.BYE) || res.IsProvisional() {
				if req, ok := msg.(*sip.Request); ok && dlg.ours(req) && req.Method == sip.BYE {
					_ = sc.send(reply(req, 200, "OK", nil, nil)) // BYEs crossed
				}
				continue
			}
			rep.Hangup = fmt.Sprintf("BYE sent: %d %s in %.1f ms", res.StatusCode, res.Reason, ms(time.Since(start)))
			return
		case <-limit:
			rep.Hangup = "BYE sent: no response within 5s"
			return
		}
	}
}

func viewCallMedia(mr mediaResult, ans answerMedia, local netip.AddrPort, elapsed time.Duration) *callMediaView {
	v := &callMediaView{
		Codec: ans.codec + " (1 kHz tone)", SRTP: callSuite, Local: local.String(), Remote: ans.remote.String(),
		DurationSec: elapsed.Round(time.Millisecond).Seconds(),
		SentRTP:     mr.SentRTP, SentRTCP: mr.SentRTCP, ReceivedRTP: mr.Received.Packets, ReceivedRTCP: mr.Received.RTCPPackets,
		Echo: mr.Echo, AuthFailures: mr.AuthFailures, Expected: mr.Received.Expected, Lost: mr.Received.Lost,
		LossPercent: round3(mr.Received.LossPercent()), JitterMs: round3(mr.Received.JitterMs), MaxJitterMs: round3(mr.Received.MaxJitterMs),
		RTTMs: round3(mr.RTTMs), RTTSource: mr.RTTSource,
	}
	v.OneWayDelayMs, v.DelayAssumed = media.DefaultOneWayDelayMs, true
	if mr.RTTMs > 0 {
		v.OneWayDelayMs, v.DelayAssumed = round3(mr.RTTMs/2), false
	}
	if mr.Received.Packets > 0 {
		s := media.Estimate(media.CodecByName(ans.codec), v.OneWayDelayMs, mr.Received.JitterMs, mr.Received.LossPercent())
		v.R, v.MOS = s.R, s.MOS
	}
	return v
}

// finish computes the checks and the result.
func (r *callReport) finish(expectMedia bool) {
	r.Checks = []callCheck{}
	add := func(name, value, threshold, status string) {
		r.Checks = append(r.Checks, callCheck{Name: name, Value: value, Threshold: threshold, Status: status})
	}
	if !r.Answered {
		add("answer", "no", "2xx", "fail")
	} else {
		add("answer", fmt.Sprintf("%d after %.0f ms", r.FinalCode, r.SetupMs), "2xx", "ok")
	}
	m := r.Media
	if m != nil {
		st := "ok"
		if m.SentRTP == 0 {
			st = "fail"
			r.Failures = append(r.Failures, "no media sent")
		}
		add("media sent", fmt.Sprintf("%d RTP, %d RTCP", m.SentRTP, m.SentRTCP), "> 0", st)
		switch {
		case m.ReceivedRTP > 0:
			add("media back", fmt.Sprintf("%d RTP, %d RTCP%s", m.ReceivedRTP, m.ReceivedRTCP, map[bool]string{true: " (echo of ours)"}[m.Echo]), "> 0", "ok")
		case expectMedia:
			add("media back", "none", "> 0", "fail")
			r.Failures = append(r.Failures, fmt.Sprintf("no media back (%d packets failed SRTP authentication)", m.AuthFailures))
		default:
			add("media back", "none", "not expected", "ok")
		}
		if m.RTTMs > 0 {
			add("one-way latency", fmt.Sprintf("%.1f ms (RTT %.1f ms, %s)", m.OneWayDelayMs, m.RTTMs, m.RTTSource),
				fmt.Sprintf("< %g ms", media.OneWayDelayThresholdMs), okWarn(m.OneWayDelayMs < media.OneWayDelayThresholdMs))
		} else {
			add("one-way latency", fmt.Sprintf("not measured (no RTCP round trip); MOS assumes %g ms", media.DefaultOneWayDelayMs),
				fmt.Sprintf("< %g ms", media.OneWayDelayThresholdMs), "not measured")
		}
		if m.ReceivedRTP > 0 {
			add("jitter", fmt.Sprintf("%.1f ms (max %.1f)", m.JitterMs, m.MaxJitterMs), fmt.Sprintf("< %g ms", media.JitterThresholdMs),
				okWarn(m.JitterMs <= media.JitterThresholdMs))
			add("loss", fmt.Sprintf("%.2f %% (%d lost of %d)", m.LossPercent, m.Lost, m.Expected), fmt.Sprintf("< %g %%", media.LossThresholdPercent),
				okWarn(m.LossPercent <= media.LossThresholdPercent))
			st := okWarn(m.MOS >= media.MOSThreshold)
			if m.MOS < media.MOSUnacceptable {
				st = "fail"
				r.Failures = append(r.Failures, fmt.Sprintf("MOS %.2f < %g (unacceptable)", m.MOS, media.MOSUnacceptable))
			}
			add("MOS", fmt.Sprintf("%.2f (R %.1f)", m.MOS, m.R), fmt.Sprintf(">= %g (< %g unacceptable)", media.MOSThreshold, media.MOSUnacceptable), st)
		}
	}
	r.Result = "pass"
	for _, c := range r.Checks {
		if c.Status == "warn" {
			r.Result = "degraded"
		}
	}
	if len(r.Failures) > 0 || !r.Answered {
		r.Result = "fail"
	}
}

func okWarn(ok bool) string {
	if ok {
		return "ok"
	}
	return "warn"
}

func writeCallReport(w io.Writer, r *callReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "test call %s via trunk %s\n", r.URI, r.Trunk)
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "  target      %s (%s): %s\n", t.Addr, t.Host, t.Result)
	}
	if len(r.Responses) > 0 {
		var rs []string
		for _, x := range r.Responses {
			rs = append(rs, fmt.Sprintf("%d %s (%.0f ms)", x.Code, x.Reason, x.AfterMs))
		}
		fmt.Fprintf(&b, "  responses   %s\n", strings.Join(rs, ", "))
	}
	if r.Answered {
		fmt.Fprintf(&b, "  setup       %.0f ms\n", r.SetupMs)
	}
	if m := r.Media; m != nil {
		fmt.Fprintf(&b, "  media       %s, SRTP %s, %s -> %s, %.1f s\n", m.Codec, m.SRTP, m.Local, m.Remote, m.DurationSec)
		fmt.Fprintf(&b, "  sent        %d RTP, %d RTCP\n", m.SentRTP, m.SentRTCP)
		echo := ""
		if m.Echo {
			echo = " (an echo of ours: loss and jitter are of the round trip)"
		}
		fmt.Fprintf(&b, "  received    %d RTP, %d RTCP%s\n", m.ReceivedRTP, m.ReceivedRTCP, echo)
	}
	if r.Hangup != "" {
		fmt.Fprintf(&b, "  hangup      %s\n", r.Hangup)
	}
	tw := strings.Builder{}
	for _, c := range r.Checks {
		fmt.Fprintf(&tw, "  %-16s %-12s %s   [%s]\n", c.Name, strings.ToUpper(c.Status), c.Value, c.Threshold)
	}
	b.WriteString(tw.String())
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  failure     %s\n", f)
	}
	fmt.Fprintf(&b, "result: %s\n", strings.ToUpper(r.Result))
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) float64 { return round3(float64(d.Microseconds()) / 1000) }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("call: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
