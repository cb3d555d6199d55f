package sip_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	goredis "github.com/redis/go-redis/v9"

	edgesip "github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// clusterBed is one node of a cluster on redis: an SBC (relaying media
// unless noMedia) with its own scripted callee; insideExtra is added to
// the inside trunk (its max_calls).
func clusterBed(t *testing.T, pki *siptest.PKI, redis *siptest.Redis, id, insideExtra string, noMedia bool) *bed {
	t.Helper()
	return clusterBedWith(t, pki, redis, id, siptest.SBCOptions{InsideExtra: insideExtra, NoMedia: noMedia})
}

// clusterBedWith is clusterBed with more options (o.Callee is set here).
func clusterBedWith(t *testing.T, pki *siptest.PKI, redis *siptest.Redis, id string, o siptest.SBCOptions) *bed {
	t.Helper()
	l := siptest.Listen(t, pki, "callee.test")
	o.Callee = l.Addr()
	if redis != nil {
		o.Cluster = &siptest.ClusterOptions{NodeID: id, Redis: redis.Addr()}
	}
	return &bed{pki: pki, sbc: siptest.StartSBC(t, pki, o), callee: l}
}

// offer sends a new call to bd from a new caller connection: admitted, the
// callee gets its INVITE and answers 180 (the call keeps ringing and
// counting); refused, the caller's final response is returned.
func offer(t *testing.T, bd *bed) (admitted bool, res *sip.Response) {
	t.Helper()
	return offerTo(t, bd, "sips:bob@sbc.test", bd.calleePeer)
}

// offerTo is offer toward ruri, whose callee is callee's peer.
func offerTo(t *testing.T, bd *bed, ruri string, callee func() *siptest.Peer) (admitted bool, res *sip.Response) {
	t.Helper()
	return siptest.OfferRinging(t, bd.caller(t), ruri, callee, wait)
}

func warning(res *sip.Response) string {
	if h := res.GetHeader("Warning"); h != nil {
		return h.Value()
	}
	return ""
}

func retryAfterOf(res *sip.Response) string {
	if h := res.GetHeader("Retry-After"); h != nil {
		return h.Value()
	}
	return ""
}

// TestClusterTrunkLimit: a trunk with max_calls 10 on two nodes that
// share one Redis: 5 calls on each, and the 11th is refused on either node
// with the response a single node's limit gives; when one node stops
// without releasing anything (its cluster closed as by SIGKILL: no
// release, no heartbeat), its 5 slots count no more within 10 s and the
// other node admits 5 calls, not 6.
func TestClusterTrunkLimit(t *testing.T) {
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	n1 := clusterBed(t, pki, redis, "n1", "max_calls: 10", true)
	n2 := clusterBed(t, pki, redis, "n2", "max_calls: 10", true)

	// What a single node answers the 11th call of a trunk with max_calls 10.
	local := clusterBed(t, pki, nil, "", "max_calls: 10", true)
	for range 10 {
		if ok, res := offer(t, local); !ok {
			t.Fatalf("single node: refused %d before its limit", res.StatusCode)
		}
	}
	_, want := offer(t, local)
	if want.StatusCode != 503 || !strings.Contains(warning(want), "call limit reached") {
		t.Fatalf("single node: the 11th call got %d %q", want.StatusCode, warning(want))
	}

	for i := range 10 {
		n := n1
		if i%2 == 1 {
			n = n2
		}
		if ok, res := offer(t, n); !ok {
			t.Fatalf("call %d refused with %d %q before the cluster limit", i+1, res.StatusCode, warning(res))
		}
	}
	for _, n := range []*bed{n1, n2} {
		ok, res := offer(t, n)
		if ok {
			t.Fatal("the 11th call across the cluster was admitted")
		}
		if res.StatusCode != want.StatusCode || warning(res) != warning(want) || retryAfterOf(res) != retryAfterOf(want) {
			t.Fatalf("the 11th call got %d %q Retry-After %q; a single node gives %d %q Retry-After %q",
				res.StatusCode, warning(res), retryAfterOf(res), want.StatusCode, warning(want), retryAfterOf(want))
		}
	}
	if got := metricValue(t, n1.sbc, "edge_sbc_admission_refused_total", "trunk_max_calls"); got != 1 {
		t.Fatalf("edge_sbc_admission_refused_total{reason=trunk_max_calls} = %v on n1, want 1", got)
	}

	// n1 is lost: nothing is released, its heartbeat stops.
	stopped := time.Now()
	if err := n1.sbc.Cluster.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		if ok, _ := offer(t, n2); ok {
			break
		}
		if time.Since(stopped) > 10*time.Second {
			t.Fatal("the stopped node's calls still count after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	freed := time.Since(stopped)
	t.Logf("a stopped node's slots were free %s after its last heartbeat could have been sent", freed.Round(10*time.Millisecond))
	for i := range 4 {
		if ok, res := offer(t, n2); !ok {
			t.Fatalf("call %d of the 5 freed slots refused: %d", i+2, res.StatusCode)
		}
	}
	if ok, _ := offer(t, n2); ok {
		t.Fatal("a 6th call was admitted in the 5 slots the stopped node freed")
	}
}

// TestClusterRedisDown: Redis killed under a node: the calls in progress
// go on, new calls are admitted by the node's own limits (which counted
// the calls the cluster admitted) and refused when those are reached, Up
// reports the outage, and it is logged once.
func TestClusterRedisDown(t *testing.T) {
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	bd := clusterBed(t, pki, redis, "n1", "max_calls: 3", false)
	if !bd.sbc.Cluster.Up() {
		t.Fatal("Redis is up but the cluster says it is not")
	}
	c1 := basicCall(t, bd)
	c2 := basicCall(t, bd)
	redis.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for bd.sbc.Cluster.Up() {
		if time.Now().After(deadline) {
			t.Fatal("Redis killed, but Up is still true after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c3 := basicCall(t, bd) // the third of max_calls 3, by local limits
	if ok, res := offer(t, bd); ok || res.StatusCode != 503 || !strings.Contains(warning(res), "call limit reached") {
		t.Fatalf("a 4th call with Redis down: admitted %v, %v; want the local limit's 503", ok, res)
	}
	toB := siptest.MediaAddr(t, c1.reqB.Body())
	if !c1.rtpB.Flows(toB, c1.rtpA, 2*time.Second) {
		t.Fatal("media of a call in progress stopped with Redis")
	}
	for _, c := range []*callUp{c1, c2, c3} {
		c.hangupNoIdle(t)
	}
	if n := strings.Count(bd.sbc.Log.String(), "cluster: Redis unreachable"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}
}

// metricValue is the value of the counter or gauge name{reason=label} (or
// the first series when label is "") in the SBC's registry; 0 when absent.
func metricValue(t *testing.T, s *siptest.SBC, name, label string) float64 {
	t.Helper()
	mfs, err := s.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// secondTrunk is a destination trunk "second" (max_calls 1) whose callee
// listens on l, routed for Request-URI users starting with carol.
func secondTrunk(l *siptest.Listener) siptest.SBCOptions {
	return siptest.SBCOptions{
		NoMedia:     true,
		Trunks:      []string{`{ name: second, uri: "sips:` + l.Addr() + `", identity: callee.test, max_calls: 1, allow_plain_rtp: true, refer: local }`},
		Routes:      []string{`{ from: outside, to: second, ruri_user_prefix: carol }`, `{ from: inside, to: second, ruri_user_prefix: carol }`},
		InsideExtra: "refer: local",
	}
}

// TestClusterRedirect: a followed 3xx toward another trunk moves the
// call's slot there through the cluster: refused while that trunk is full
// on the other node (a single node would not know), followed once it is
// not; every slot is given back at the end.
func TestClusterRedirect(t *testing.T) {
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	l1, l2 := siptest.Listen(t, pki, "callee.test"), siptest.Listen(t, pki, "callee.test")
	n1 := clusterBedWith(t, pki, redis, "n1", secondTrunk(l1))
	n2 := clusterBedWith(t, pki, redis, "n2", secondTrunk(l2))
	var c2 *siptest.Peer
	callee2 := func() *siptest.Peer {
		if c2 == nil {
			c2 = l2.Accept(wait)
		}
		return c2
	}
	// n2 fills trunk second (max_calls 1).
	if ok, res := offerTo(t, n2, "sips:carol@sbc.test", callee2); !ok {
		t.Fatalf("the call to carol on n2 was refused: %d", res.StatusCode)
	}
	redirect := func() (*siptest.Peer, *sip.Request, *siptest.Peer) {
		a := n1.caller(t)
		inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(4000, 1, ""))
		a.Send(inv)
		b := n1.calleePeer()
		invB := b.Request(wait, sip.INVITE)
		b.Send(b.Reply(invB, 302, siptest.Tag(), nil, sip.NewHeader("Contact", "<sips:carol@sbc.test>")))
		b.Request(wait, sip.ACK)
		return a, inv, b
	}
	a, inv, _ := redirect()
	res := a.Response(wait, sip.INVITE, 503)
	if !strings.Contains(warning(res), "call limit reached") {
		t.Fatalf("redirect toward a full trunk: %d %q", res.StatusCode, warning(res))
	}
	a.Send(siptest.AckNon2xx(inv, res))
	n1.sbc.WaitIdle(t, wait)
	if n := n1.sbc.Cluster.Admitter().Calls(); n != 0 {
		t.Fatalf("n1 still counts %d calls after the refused redirect", n)
	}
	// n2's call ends: the redirect is followed.
	_ = n2.sbc.B2BUA.Close()
	deadline := time.Now().Add(wait)
	for n2.sbc.Cluster.Admitter().Calls() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("n2 did not release its call")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a, inv, _ = redirect()
	callee1 := l1.Accept(wait)
	invC := callee1.Request(wait, sip.INVITE)
	if invC.Recipient.User != "carol" {
		t.Fatalf("redirected to %s", invC.Recipient.String())
	}
	tag := siptest.Tag()
	callee1.Send(callee1.Reply(invC, 200, tag, siptest.SDP(4002, 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	callee1.Request(wait, sip.ACK)
	if n := n1.sbc.Cluster.Admitter().Calls(); n != 1 {
		t.Fatalf("n1 counts %d calls during the redirected call, want 1", n)
	}
	(&callUp{a: a, b: callee1, inv: d}).hangup(t, n1)
	waitUncounted(t, n1)
}

// waitUncounted waits until bd's node counts no call in the cluster.
func waitUncounted(t *testing.T, bd *bed) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for bd.sbc.Cluster.Admitter().Calls() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the node still counts %d calls", bd.sbc.Cluster.Admitter().Calls())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterTransfer: a blind transfer with a cluster is a call of its
// own in the cluster's counts: it completes as without one and gives every
// slot back; toward a trunk full on another node, the REFER is refused
// with the local limit's 503.
func TestClusterTransfer(t *testing.T) {
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	n1 := clusterBedWith(t, pki, redis, "n1", siptest.SBCOptions{InsideExtra: "refer: local"})
	blindTransfer(t, n1)
	waitUncounted(t, n1)

	l1, l2 := siptest.Listen(t, pki, "callee.test"), siptest.Listen(t, pki, "callee.test")
	n3 := clusterBedWith(t, pki, redis, "n3", secondTrunk(l1))
	n4 := clusterBedWith(t, pki, redis, "n4", secondTrunk(l2))
	var c4 *siptest.Peer
	if ok, _ := offerTo(t, n4, "sips:carol@sbc.test", func() *siptest.Peer {
		if c4 == nil {
			c4 = l2.Accept(wait)
		}
		return c4
	}); !ok {
		t.Fatal("the call filling trunk second was refused")
	}
	c := basicCall(t, n3)
	refer := c.invB.Request(sip.REFER, nil)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sips:carol@sbc.test>"))
	c.b.Send(refer)
	res := c.b.Response(wait, sip.REFER, 0)
	if res.StatusCode != 503 || !strings.Contains(warning(res), "call limit reached") {
		t.Fatalf("REFER toward a trunk full on another node: %d %q", res.StatusCode, warning(res))
	}
	c.hangup(t, n3)
	waitUncounted(t, n3)
}

// srtpSDP is an SDES offer or answer (RTP/SAVP PCMU, one
// AES_CM_128_HMAC_SHA1_80 line of tag 1 with key) on 127.0.0.1:port.
func srtpSDP(port, version int, dir, key string) []byte {
	if dir == "" {
		dir = "sendrecv"
	}
	return []byte(fmt.Sprintf("v=0\r\no=- 4711 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s\r\na=%s\r\n", version, port, key, dir))
}

// sdesKey is a new inline key (30 bytes, base64) and its bytes.
func sdesKey(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b), b
}

// inlineKey is the key of the first a=crypto line of an SDP.
func inlineKey(t *testing.T, sdp []byte) (string, []byte) {
	t.Helper()
	_, rest, ok := strings.Cut(string(sdp), "inline:")
	if !ok {
		t.Fatalf("no a=crypto in\n%s", sdp)
	}
	k, _, _ := strings.Cut(rest, "\r\n")
	k, _, _ = strings.Cut(k, "|")
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, b
}

// evalCalls is how many scripts Redis ran since its statistics were reset
// (EVALSHA and EVAL calls that did not fail: go-redis's first EVALSHA of a
// script Redis does not know yet fails with NOSCRIPT and is sent again as
// EVAL).
func evalCalls(t *testing.T, raw *goredis.Client) int {
	t.Helper()
	info, err := raw.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name != "cmdstat_evalsha" && name != "cmdstat_eval" {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			k, v, _ := strings.Cut(kv, "=")
			c, _ := strconv.Atoi(v)
			switch k {
			case "calls":
				n += c
			case "failed_calls", "rejected_calls":
				n -= c
			}
		}
	}
	return n
}

// TestClusterCallState: a call answered through a node with SRTP
// terminated on the callee's leg: its state reaches Redis sealed (no SDP,
// key, Call-ID or tag in the value), another node's Load opens it into the
// call's dialogs, trunks, session timer and media (relay ports, learned
// addresses, SRTP mode and keys); a re-INVITE (hold) writes it again once
// completed; the BYE deletes it. The size and the Redis scripts the call
// cost are logged.
func TestClusterCallState(t *testing.T) {
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	quiet := func(o *cluster.Options) { o.HeartbeatInterval, o.HeartbeatTTL = time.Minute, 3*time.Minute }
	l := siptest.Listen(t, pki, "callee.test")
	bd := &bed{pki: pki, callee: l, sbc: siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(), InsideSRTP: "terminate",
		SIP:     "{ provisional_timeout: 5s, session_expires: 120s }",
		Cluster: &siptest.ClusterOptions{NodeID: "n1", Redis: redis.Addr(), Mod: quiet}})}
	other, err := cluster.Open(cluster.Options{NodeID: "n2", Key: bytes.Repeat([]byte{0x42}, cluster.KeySize),
		Redis: cluster.RedisOptions{Addrs: []string{redis.Addr()}}, HeartbeatInterval: time.Minute, HeartbeatTTL: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	if err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: redis.Addr(), Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	if err := raw.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	keyA, keyABytes := sdesKey(t)
	keyB, keyBBytes := sdesKey(t)
	a := bd.caller(t)
	rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", srtpSDP(rtpA.Port(), 1, "", keyA))
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	tagB := siptest.Tag()
	b.Send(b.Reply(invB, 200, tagB, srtpSDP(rtpB.Port(), 1, "", keyB), sip.NewHeader("Session-Expires", "120;refresher=uac")))
	ok := a.Response(wait, sip.INVITE, 200)
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	sbcKeyToA, sbcKeyToABytes := inlineKey(t, ok.Body())
	sbcKeyToB, _ := inlineKey(t, invB.Body())

	// The sealed value in Redis.
	var id, value string
	deadline := time.Now().Add(wait)
	for id == "" {
		keys, err := raw.Keys(ctx, "edge-sbc:state:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 1 {
			id = strings.TrimPrefix(keys[0], "edge-sbc:state:")
			value, _ = raw.Get(ctx, keys[0]).Result()
		}
		if time.Now().After(deadline) {
			t.Fatal("no call state in Redis after the answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, secret := range []string{"m=audio", "inline:", "AES_CM_128", "crypto", keyA, keyB, sbcKeyToA, sbcKeyToB,
		string(keyBBytes[:8]), inv.CallID().Value(), invB.CallID().Value(), tagB, d.LocalTag, "sips:", "call_id"} {
		if strings.Contains(value, secret) {
			t.Fatalf("the state in Redis shows %q in clear", secret)
		}
	}

	load := func() edgesip.CallState {
		t.Helper()
		all, err := other.StateStore().Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := edgesip.DecodeCallState(all[id])
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := load()
	toA, toB := siptest.MediaAddr(t, ok.Body()), siptest.MediaAddr(t, invB.Body())
	switch {
	case st.A.CallID != inv.CallID().Value() || st.A.RemoteTag != d.LocalTag || st.A.LocalTag != d.RemoteTag || st.A.Trunk != "outside":
		t.Fatalf("leg A %+v", st.A)
	case st.B.CallID != invB.CallID().Value() || st.B.RemoteTag != tagB || st.B.LocalCSeq != invB.CSeq().SeqNo || st.B.Trunk != "inside" ||
		!slices.Contains(st.B.Identities, "callee.test") || !strings.Contains(st.B.Target, "callee.test@"):
		t.Fatalf("leg B %+v", st.B)
	case st.TrunkA != "outside" || st.TrunkB != "inside" || st.Session.Interval != 120*time.Second || st.AdmKey != id:
		t.Fatalf("call %+v", st)
	case st.Media == nil || len(st.Media.Streams) != 1 || st.Media.ModeB != "terminate":
		t.Fatalf("media %v", st.Media)
	}
	ms := st.Media.Streams[0]
	if ms.A.Port != int(toA.Port()) || ms.B.Port != int(toB.Port()) || ms.A.Signalled.Port() != uint16(rtpA.Port()) ||
		ms.B.Remote.Port() != uint16(rtpB.Port()) {
		t.Fatalf("stream %+v, want SBC ports %d/%d toward %d/%d", ms, toA.Port(), toB.Port(), rtpA.Port(), rtpB.Port())
	}
	if ms.B.RecvKey == nil || !bytes.Equal(ms.B.RecvKey.Material, keyBBytes) || ms.A.RecvKey == nil ||
		!bytes.Equal(ms.A.RecvKey.Material, keyABytes) || ms.A.SendKey == nil || !bytes.Equal(ms.A.SendKey.Material, sbcKeyToABytes) {
		t.Fatal("the state's SRTP keys are not the call's")
	}

	// A re-INVITE puts the callee on hold: written again once completed.
	re := d.Request(sip.INVITE, srtpSDP(rtpA.Port(), 2, "sendonly", keyA))
	a.Send(re)
	reB := b.Request(wait, sip.INVITE)
	b.Send(b.Reply(reB, 200, tagB, srtpSDP(rtpB.Port(), 2, "recvonly", keyB)))
	a.Response(wait, sip.INVITE, 200)
	b.Request(wait, sip.ACK)
	a.Send(d.Request(sip.ACK, nil, re.CSeq().SeqNo))
	deadline = time.Now().Add(wait)
	for load().Media.Streams[0].A.Dir != "sendonly" {
		if time.Now().After(deadline) {
			t.Fatal("the state was not written again after the re-INVITE")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := load(); st.A.RemoteCSeq != re.CSeq().SeqNo {
		t.Fatalf("leg A's CSeq in the state %d, want %d", st.A.RemoteCSeq, re.CSeq().SeqNo)
	}

	// The BYE deletes it.
	(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
	deadline = time.Now().Add(wait)
	for {
		n, err := raw.Exists(ctx, "edge-sbc:state:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call's state is still in Redis after the BYE")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitUncounted(t, bd)
	scripts := evalCalls(t, raw)
	if scripts != 5 {
		t.Errorf("the call ran %d scripts in Redis, want 5 (admit, 2 puts, delete, release)", scripts)
	}
	logs := bd.sbc.Log.String()
	i := strings.Index(logs, `"state_writes":2`)
	if i < 0 {
		t.Fatalf("the call_end line does not say 2 state writes:\n%s", logs)
	}
	_, sz, _ := strings.Cut(logs[i:], `"state_bytes":`)
	sz, _, _ = strings.Cut(sz, "}")
	sz, _, _ = strings.Cut(sz, ",")
	t.Logf("call state: %s bytes of JSON, %d bytes sealed in Redis; %d Redis scripts for the call (admit, put on answer, put after the re-INVITE, delete, release)",
		sz, len(value), scripts)
}

// countingAdmitter is a cluster admission that admits everything, counts
// what it is asked per key and, while hold is set, makes Admit wait until
// the test lets it go.
type countingAdmitter struct {
	mu       sync.Mutex
	admits   map[string]int
	releases map[string]int
	hold     chan struct{} // Admit waits for it to be closed (nil: no wait)
	entered  chan string   // each Admit's key, before it waits
}

func newCountingAdmitter() *countingAdmitter {
	return &countingAdmitter{admits: map[string]int{}, releases: map[string]int{}, entered: make(chan string, 64)}
}

func (f *countingAdmitter) Admit(_ context.Context, req cluster.AdmitRequest) (bool, string, error) {
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	f.entered <- req.CallID
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	f.admits[req.CallID]++
	f.mu.Unlock()
	return true, "", nil
}

func (f *countingAdmitter) Adopt(context.Context, cluster.AdmitRequest) error { return nil }

func (f *countingAdmitter) Release(_ context.Context, id string) error {
	f.mu.Lock()
	f.releases[id]++
	f.mu.Unlock()
	return nil
}

// balanced fails t unless every key admitted was released exactly once,
// and no key was released without an admission (within wait).
func (f *countingAdmitter) balanced(t *testing.T, admitted int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		ok := len(f.admits) == admitted
		var bad []string
		for k, n := range f.admits {
			if n != 1 || f.releases[k] != 1 {
				ok = false
				bad = append(bad, fmt.Sprintf("%s: %d admits, %d releases", k, n, f.releases[k]))
			}
		}
		for k := range f.releases {
			if f.admits[k] == 0 {
				ok = false
				bad = append(bad, k+": released, never admitted")
			}
		}
		f.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys admitted (want %d), not balanced: %v", len(f.admits), admitted, bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdmissionReleasedOnce: with a cluster admission, every slot taken is
// given back exactly once: an answered call, a failed setup (486), a call
// cancelled while ringing, and a call cancelled while its admission was
// still in flight (the result arrives after the call ended; no INVITE
// reaches the callee).
func TestAdmissionReleasedOnce(t *testing.T) {
	adm := newCountingAdmitter()
	bd := newBed(t, siptest.SBCOptions{Admitter: adm, NoMedia: true})

	c := basicCall(t, bd) // answered
	c.hangup(t, bd)

	a := bd.caller(t) // refused by the callee
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(4000, 1, ""))
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	b.Send(b.Reply(invB, 486, siptest.Tag(), nil))
	b.Request(wait, sip.ACK)
	res := a.Response(wait, sip.INVITE, 486)
	a.Send(siptest.AckNon2xx(inv, res))

	inv = a.NewInvite("sips:bob@sbc.test", siptest.SDP(4000, 1, "")) // cancelled while ringing
	a.Send(inv)
	invB = b.Request(wait, sip.INVITE)
	b.Send(b.Reply(invB, 180, siptest.Tag(), nil))
	a.Response(wait, sip.INVITE, 180)
	a.Send(siptest.Cancel(inv))
	cb := b.Request(wait, sip.CANCEL)
	b.Send(b.Reply(cb, 200, "", nil), b.Reply(invB, 487, "", nil))
	b.Request(wait, sip.ACK)
	res = a.Response(wait, sip.INVITE, 487)
	a.Send(siptest.AckNon2xx(inv, res))
	bd.sbc.WaitIdle(t, wait)
	adm.balanced(t, 3)

	// Cancelled while the cluster decides.
	for len(adm.entered) > 0 {
		<-adm.entered
	}
	hold := make(chan struct{})
	adm.mu.Lock()
	adm.hold = hold
	adm.mu.Unlock()
	inv = a.NewInvite("sips:bob@sbc.test", siptest.SDP(4000, 1, ""))
	a.Send(inv)
	select {
	case <-adm.entered:
	case <-time.After(wait):
		t.Fatal("the cluster was not asked")
	}
	a.Send(siptest.Cancel(inv))
	res = a.Response(wait, sip.INVITE, 487)
	a.Send(siptest.AckNon2xx(inv, res))
	close(hold)
	b.Nothing(300*time.Millisecond, "INVITE of a cancelled call", siptest.IsRequest(sip.INVITE))
	bd.sbc.WaitIdle(t, wait)
	adm.balanced(t, 4)
}
