package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sbc/edge-sbc/media"
	edgesip "github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

const callWait = 5 * time.Second

// liveCall is a call in progress through an in-process SBC (sip/siptest),
// with media both ways: clean from A, 10 % loss from B.
type liveCall struct {
	sbc         *siptest.SBC
	a, b        *siptest.Peer
	dlg         *siptest.Dialog
	reqB        *sip.Request
	tagB        string
	rtpA, rtpB  *siptest.RTP
	toA, toB    netip.AddrPort // the SBC's media addresses facing A and B
	correlation string
}

func startLiveCall(t *testing.T) *liveCall {
	t.Helper()
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	l := siptest.Listen(t, pki, "callee.test")
	c := &liveCall{sbc: siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(), LogLevel: "warn"})}
	c.a = siptest.Dial(t, pki, c.sbc.MTLS, "caller.test", true)
	c.rtpA, c.rtpB = siptest.NewRTP(t), siptest.NewRTP(t)
	inv := c.a.NewInvite("sips:bob@sbc.test", siptest.SDP(c.rtpA.Port(), 1, ""))
	c.a.Send(inv)
	c.b = l.Accept(callWait)
	c.reqB = c.b.Request(callWait, sip.INVITE)
	c.tagB = siptest.Tag()
	c.b.Send(c.b.Reply(c.reqB, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 1, "")))
	ok := c.a.Response(callWait, sip.INVITE, 200)
	c.dlg = c.a.UACDialog(inv, ok)
	c.a.Send(c.dlg.Request(sip.ACK, nil, inv.CSeq().SeqNo))
	c.b.Request(callWait, sip.ACK)
	c.sbc.WaitConfirmed(t)
	c.toA, c.toB = siptest.MediaAddr(t, ok.Body()), siptest.MediaAddr(t, c.reqB.Body())
	if !c.rtpA.Flows(c.toA, c.rtpB, 2*time.Second) {
		t.Fatal("no media from A to B")
	}
	c.rtpA.Send(c.toA, 40)
	// From B: 100 packets, every tenth missing (10 % loss: MOS < 3.5).
	for i := range 100 {
		if i%10 == 4 {
			continue
		}
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(500 + i), Timestamp: uint32(i * 160), SSRC: 0xb0b},
			Payload: make([]byte, 160)}
		raw, _ := p.Marshal()
		if _, err := c.rtpB.Conn.WriteToUDPAddrPort(raw, c.toB); err != nil {
			t.Fatal(err)
		}
	}
	calls := c.sbc.B2BUA.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	c.correlation = calls[0].Call
	// Wait until the relay published both directions.
	deadline := time.Now().Add(callWait)
	for {
		m := c.sbc.B2BUA.Calls()[0].Media
		if len(m) == 1 && m[0].FromA.Packets >= 41 && m[0].FromB.Packets == 90 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("media not accounted: %+v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

func (c *liveCall) hangup(t *testing.T) {
	t.Helper()
	c.a.Send(c.dlg.Request(sip.BYE, nil))
	bye := c.b.Request(callWait, sip.BYE)
	c.b.Send(c.b.Reply(bye, 200, "", nil))
	c.a.Response(callWait, sip.BYE, 200)
}

// callsServer serves the live call view of c's SBC as the metrics
// listener does.
func callsServer(t *testing.T, c *liveCall) *httptest.Server {
	mux := http.NewServeMux()
	registerCallsHandlers(mux, c.sbc.B2BUA.Calls)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestCallsView: GET /calls lists the call in progress with its trunks,
// per-stream packets, loss, jitter, MOS and the SBC's media addresses, and
// flags the direction under the Webex thresholds; `edge-sbc calls` prints
// it as a table and as JSON; GET / is the embedded page.
func TestCallsView(t *testing.T) {
	c := startLiveCall(t)
	srv := callsServer(t, c)

	res, err := http.Get(srv.URL + "/calls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /calls: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	var r callsReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if len(r.Calls) != 1 {
		t.Fatalf("calls: %s", body)
	}
	cv := r.Calls[0]
	if cv.Call != c.correlation || cv.TrunkA != "outside" || cv.TrunkB != "inside" || cv.State != "confirmed" || len(cv.Streams) != 1 || !cv.Degraded {
		t.Fatalf("call view %+v", cv)
	}
	s := cv.Streams[0]
	if s.Codec != "PCMU" || s.Media != "audio" || s.RemoteA != fmt.Sprintf("127.0.0.1:%d", c.rtpA.Port()) || s.RemoteB != fmt.Sprintf("127.0.0.1:%d", c.rtpB.Port()) {
		t.Errorf("stream %+v", s)
	}
	if a := s.FromA; a.Packets < 41 || a.Lost != 0 || a.MOS < media.MOSThreshold || len(a.Degraded) != 0 {
		t.Errorf("clean direction %+v", a)
	}
	if b := s.FromB; b.Packets != 90 || b.Lost != 10 || b.LossPercent != 10 || b.MOS <= 0 || b.MOS >= media.MOSUnacceptable ||
		strings.Join(b.Degraded, ",") != "loss,mos" || b.R <= 0 {
		t.Errorf("lossy direction %+v", b)
	}
	if r.Thresholds.MOS != 4 || r.Thresholds.JitterMs != 30 || r.Thresholds.LossPercent != 1 {
		t.Errorf("thresholds %+v", r.Thresholds)
	}

	addr := strings.TrimPrefix(srv.URL, "http://")
	var table bytes.Buffer
	if err := cmdCalls([]string{"--metrics", addr}, &table); err != nil {
		t.Fatal(err)
	}
	t.Logf("edge-sbc calls:\n%s", table.String())
	for _, want := range []string{c.correlation, "outside → inside", "confirmed", "audio#0", "PCMU", "A→B", "B→A", "10.00", "DEGRADED: loss,mos", "1 call(s), 1 degraded"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	var js bytes.Buffer
	if err := cmdCalls([]string{"--json", "--metrics", addr}, &js); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(js.Bytes()) || !strings.Contains(js.String(), c.correlation) {
		t.Errorf("--json: %s", js.String())
	}

	res, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !bytes.Equal(page, callsPage) {
		t.Fatalf("GET /: %s", res.Status)
	}
	if strings.Contains(string(page), "http://") || strings.Contains(string(page), "https://") || strings.Contains(string(page), "src=") {
		t.Error("the page must load nothing from elsewhere")
	}
	if res, err := http.Get(srv.URL + "/nothing"); err != nil || res.StatusCode != 404 {
		t.Errorf("GET /nothing: %v %v", res.Status, err)
	}
	c.hangup(t)
}

// TestCallsPageInBrowser loads the page in headless Chromium while a call
// is in progress: after the page's first fetch of /calls the DOM holds the
// call's correlation id, its trunks and the degraded flag; a screenshot is
// a PNG of the window's size.
func TestCallsPageInBrowser(t *testing.T) {
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("chromium is not installed (make test-deps installs Debian's chromium): the page is not tested in a browser")
	}
	c := startLiveCall(t)
	srv := callsServer(t, c)
	dir := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(dir, "profile")}

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(browser, append(append([]string{}, base...), args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("chromium %v: %v\n%s", args, err, errOut.String())
			}
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("chromium %v: no exit in 90 s\n%s", args, errOut.String())
		}
		return out.String()
	}

	dom := run("--virtual-time-budget=3000", "--dump-dom", srv.URL+"/")
	for _, want := range []string{c.correlation, "outside → inside", "confirmed", "PCMU", "degraded: loss, mos", "1 call(s), 1 degraded"} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	shot := filepath.Join(dir, "calls.png")
	run("--virtual-time-budget=3000", "--hide-scrollbars", "--window-size=1280,800", "--screenshot="+shot, srv.URL+"/")
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || string(png[12:16]) != "IHDR" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if w, h := be32(png[16:20]), be32(png[20:24]); w != 1280 || h != 800 {
		t.Errorf("screenshot %dx%d, want 1280x800", w, h)
	}
	if out := os.Getenv("EDGE_SBC_SCREENSHOT"); out != "" {
		_ = os.WriteFile(out, png, 0o644)
	}
	c.hangup(t)
}

// TestMOSSink: the CDR sink wrapper observes each scored direction in
// edge_sbc_media_mos and hands the CDR on.
func TestMOSSink(t *testing.T) {
	reg := prometheus.NewRegistry()
	var got []edgesip.CDR
	sink := withMOSMetric(reg, sinkFunc(func(r edgesip.CDR) { got = append(got, r) }))
	st := []media.StreamStats{
		{Media: "audio", FromA: media.DirectionStats{Packets: 10, MOS: 4.4}, FromB: media.DirectionStats{Packets: 10, MOS: 3.2}},
		{Media: "video", FromA: media.DirectionStats{Packets: 10}},
	}
	sink.Write(edgesip.CDR{Call: "x", Media: map[string]any{"streams": st}})
	sink.Write(edgesip.CDR{Call: "y"})
	if len(got) != 2 {
		t.Fatalf("CDRs handed on: %d", len(got))
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "edge_sbc_media_mos" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v %v", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	h := m.GetHistogram()
	if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != "audio" || h.GetSampleCount() != 2 || h.GetSampleSum() < 7.59 || h.GetSampleSum() > 7.61 {
		t.Fatalf("histogram %v", m)
	}
	for _, b := range h.GetBucket() {
		want := map[float64]uint64{3: 0, 3.5: 1, 4: 1, 4.4: 2}
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	withMOSMetric(prometheus.NewRegistry(), nil).Write(edgesip.CDR{Media: map[string]any{"streams": st}}) // no next sink: no panic
}

type sinkFunc func(edgesip.CDR)

func (f sinkFunc) Write(r edgesip.CDR) { f(r) }

func TestMetricsTarget(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:9465", "127.0.0.1:9465"}, {"0.0.0.0:9465", "127.0.0.1:9465"}, {"[::]:9465", "[::1]:9465"}, {"sbc.example:9465", "sbc.example:9465"},
	} {
		if got, err := metricsTarget(c.in, ""); err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.in, got, err, c.want)
		}
	}
	if _, err := metricsTarget("", ""); err == nil {
		t.Error("no address accepted")
	}
}
