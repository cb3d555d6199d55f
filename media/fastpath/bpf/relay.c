// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The kernel fast path of edge-sbc's media relay (see ../doc.go).
//
// Attached with TCX on ingress of the interfaces that carry the relay's
// addresses, it forwards the UDP datagrams of latched pass-through streams
// without waking the relay's reader: a datagram whose (source address,
// source port, destination port) is a key of the flows map, and whose
// destination address is one of the relay's (locals map), has its
// addresses and ports rewritten to what the relay would have sent (the
// SBC's address and port facing the other side, the other side's learned
// address and port), its TOS set to the stream's DSCP and its TTL to 64,
// and is sent with bpf_redirect_neigh from the egress interface userspace
// resolved. The UDP payload is not touched.
//
// Anything the program does not handle is passed on unchanged (TCX_NEXT:
// the programs after it, then the stack), so the relay's socket receives it
// as if the program were not there: other packets, fragments, IP options,
// GSO packets, datagrams that would exceed the egress MTU, RTP of another
// SSRC than the entry's.
//
// Every forwarded datagram is accounted in its entry like the userspace
// relay does: packets, bytes (UDP payload), RTCP apart, and for RTP the
// RFC 3550 A.1 sequence (expected, lost, out of order) and A.8 jitter.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef offsetof
#define offsetof(t, m) __builtin_offsetof(t, m)
#endif
#ifndef TCX_NEXT
#define TCX_NEXT -1
#endif
#ifndef TCX_PASS
#define TCX_PASS 0
#endif

// Entry kinds (fp_value.kind).
#define FP_RAW 0  // a non-RTP stream (BFCP): every datagram is a packet
#define FP_RTP 1  // the RTP port of an RTP stream (RTCP may be muxed)
#define FP_RTCP 2 // the RTCP port of a stream without rtcp-mux

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define SEQ_MOD 65536

struct fp_key {
	__u32 saddr; // learned source address (network order)
	__u16 sport; // learned source port (network order)
	__u16 dport; // the SBC's relay port it sends to (network order)
};

struct fp_value {
	// Set by userspace, read only here.
	__u32 new_saddr; // the SBC's address toward the other side
	__u32 new_daddr; // the other side's learned address
	__u16 new_sport; // the SBC's port facing the other side
	__u16 new_dport; // the other side's learned port
	__u32 ifindex;   // egress interface
	__u32 ssrc;      // FP_RTP: the only SSRC forwarded (host order)
	__u32 clock;     // FP_RTP: clock rate of pt (0: no jitter)
	__u8 kind;
	__u8 flags; // none yet
	__u8 pt; // FP_RTP: payload type whose clock is clock
	__u8 tos;

	// Written here, read by userspace.
	__u64 packets;
	__u64 bytes;
	__u64 rtcp_packets;
	__u64 rtcp_bytes;
	__u64 last_ns; // bpf_ktime_get_ns of the last packet
	// RFC 3550 A.1: the current run of sequence numbers and the runs before
	// it (a restart of the sequence folds the run into prev_*).
	__u64 prev_expected;
	__u64 prev_lost;
	__u64 received;
	__u64 cycles;
	__u64 out_of_order;
	__u32 base_seq;
	__u32 max_seq;
	__u32 seq_init;
	__u32 transit;      // A.8: arrival - timestamp of the last packet, clock units
	__u32 have_transit; // transit is set
	__u32 _pad;
	__u64 jitter;       // A.8 jitter x16, clock units
	__u64 max_jitter;
};

// totals counts what the program forwarded, per CPU, since it was loaded.
struct fp_totals {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_key);
	__type(value, struct fp_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); // address (network order)
	__type(value, __u8);
} locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_totals);
} totals SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, check))
#define L4_PSEUDO (BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0)

static __always_inline void account_rtp(struct fp_value *v, __u16 seq, __u32 ts, __u8 pt, __u64 now)
{
	if (!v->seq_init) {
		v->seq_init = 1;
		v->base_seq = seq;
		v->max_seq = seq;
		v->cycles = 0;
		v->received = 0;
	} else {
		__u16 udelta = seq - (__u16)v->max_seq;
		if (udelta == 0) {
			v->out_of_order++; // duplicate
		} else if (udelta < MAX_DROPOUT) {
			if (seq < (__u16)v->max_seq)
				v->cycles += SEQ_MOD;
			v->max_seq = seq;
		} else if (udelta <= SEQ_MOD - MAX_MISORDER) {
			// The source restarted its sequence: fold the run.
			__u64 expected = v->cycles + v->max_seq - v->base_seq + 1;
			v->prev_expected += expected;
			if (expected > v->received)
				v->prev_lost += expected - v->received;
			v->base_seq = seq;
			v->max_seq = seq;
			v->cycles = 0;
			v->received = 0;
		} else {
			v->out_of_order++; // reordered
		}
	}
	v->received++;

	if (pt != v->pt || v->clock == 0)
		return;
	__u32 arrival = (__u32)((now / 1000) * v->clock / 1000000);
	__u32 transit = arrival - ts;
	if (v->have_transit) {
		__s32 d = (__s32)(transit - v->transit);
		if (d < 0)
			d = -d;
		v->jitter += (__u64)d - ((v->jitter + 8) >> 4);
		if (v->jitter > v->max_jitter)
			v->max_jitter = v->jitter;
	}
	v->transit = transit;
	v->have_transit = 1;
}

SEC("tcx/ingress")
int edge_sbc_relay(struct __sk_buff *skb)
{
	if (skb->gso_size != 0)
		return TCX_NEXT; // a GSO super-packet: the stack segments it

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return TCX_NEXT;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TCX_NEXT; // IP options, other protocols
	if (ip->frag_off & bpf_htons(0x3fff))
		return TCX_NEXT; // a fragment (MF set or an offset)
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return TCX_NEXT;

	struct fp_key key = {.saddr = ip->saddr, .sport = udp->source, .dport = udp->dest};
	struct fp_value *v = bpf_map_lookup_elem(&flows, &key);
	if (!v)
		return TCX_NEXT;
	__u32 daddr = ip->daddr;
	if (!bpf_map_lookup_elem(&locals, &daddr))
		return TCX_NEXT; // not to one of the relay's addresses

	__u32 ulen = bpf_ntohs(udp->len);
	__u32 totlen = bpf_ntohs(ip->tot_len);
	if (ulen < sizeof(struct udphdr) || totlen != sizeof(struct iphdr) + ulen)
		return TCX_NEXT;
	__u32 plen = ulen - sizeof(struct udphdr);
	__u32 poff = ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr);

	int rtcp = v->kind == FP_RTCP;
	int rtp = 0;
	__u8 hdr[12];
	if (v->kind == FP_RTP) {
		if (plen < 8 || bpf_skb_load_bytes(skb, poff, hdr, 8) < 0)
			return TCX_NEXT;
		if (hdr[0] >> 6 != 2)
			return TCX_NEXT; // not RTP: the relay decides
		if (hdr[1] >= 192 && hdr[1] <= 223) {
			rtcp = 1; // muxed RTCP (RFC 5761)
		} else {
			if (plen < 12 || bpf_skb_load_bytes(skb, poff, hdr, 12) < 0)
				return TCX_NEXT;
			__u32 ssrc = ((__u32)hdr[8] << 24) | ((__u32)hdr[9] << 16) | ((__u32)hdr[10] << 8) | hdr[11];
			if (ssrc != v->ssrc)
				return TCX_NEXT; // another SSRC: the relay accounts it
			rtp = 1;
		}
	}

	__u32 mtu = 0;
	if (bpf_check_mtu(skb, v->ifindex, &mtu, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return TCX_NEXT; // too big for the egress: the relay's socket fragments it

	// Read the old header words before the helpers invalidate the pointers.
	__u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
	__u16 old_sport = udp->source, old_dport = udp->dest;
	__u16 old_tos = *(__u16 *)ip;               // version, ihl, tos
	__u16 old_ttl = *((__u16 *)ip + 4);         // ttl, protocol
	__u16 new_tos = (old_tos & bpf_htons(0xff00)) | bpf_htons(v->tos);
	__u16 new_ttl = (old_ttl & bpf_htons(0x00ff)) | bpf_htons(64 << 8);

	__u64 now = bpf_ktime_get_ns();
	// No branch here: clang would merge the two into one pointer with a
	// variable offset, which the verifier refuses without CAP_PERFMON.
	__u64 r = rtcp ? 1 : 0;
	__sync_fetch_and_add(&v->packets, 1 - r);
	__sync_fetch_and_add(&v->bytes, (1 - r) * plen);
	__sync_fetch_and_add(&v->rtcp_packets, r);
	__sync_fetch_and_add(&v->rtcp_bytes, r * plen);
	v->last_ns = now;
	if (rtp) {
		__u16 seq = ((__u16)hdr[2] << 8) | hdr[3];
		__u32 ts = ((__u32)hdr[4] << 24) | ((__u32)hdr[5] << 16) | ((__u32)hdr[6] << 8) | hdr[7];
		account_rtp(v, seq, ts, hdr[1] & 0x7f, now);
	}
	__u32 zero = 0;
	struct fp_totals *t = bpf_map_lookup_elem(&totals, &zero);
	if (t) {
		t->packets++;
		t->bytes += plen;
	}

	__u32 new_saddr = v->new_saddr, new_daddr = v->new_daddr;
	__u16 new_sport = v->new_sport, new_dport = v->new_dport;
	__u32 ifindex = v->ifindex;

	// UDP checksum: the pseudo header's addresses, then the ports.
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_saddr, new_saddr, L4_PSEUDO | sizeof(__u32));
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_daddr, new_daddr, L4_PSEUDO | sizeof(__u32));
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_sport, new_sport, BPF_F_MARK_MANGLED_0 | sizeof(__u16));
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dport, new_dport, BPF_F_MARK_MANGLED_0 | sizeof(__u16));
	// IP header checksum: addresses, TOS, TTL.
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_saddr, new_saddr, sizeof(__u32));
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_daddr, new_daddr, sizeof(__u32));
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_tos, new_tos, sizeof(__u16));
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl, new_ttl, sizeof(__u16));

	bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), &new_saddr, sizeof(__u32), 0);
	bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, daddr), &new_daddr, sizeof(__u32), 0);
	bpf_skb_store_bytes(skb, ETH_HLEN, &new_tos, sizeof(__u16), 0);
	bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &new_ttl, sizeof(__u16), 0);
	bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, source), &new_sport, sizeof(__u16), 0);
	bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, dest), &new_dport, sizeof(__u16), 0);

	// The route lookup of bpf_redirect_neigh also serves a destination on
	// this host (through the loopback, which keeps the route it sets).
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

char __license[] SEC("license") = "Dual BSD/GPL";
