// Package fastpath is the kernel fast path of the media relay: an eBPF
// program (bpf/relay.c, compiled by bpf2go into the committed
// relay_bpfel.o and relay_bpfeb.o) attached with TCX on ingress of the
// interfaces carrying the relay's addresses. For each latched
// pass-through direction the media package adds a Flow; the program then
// forwards that direction's datagrams itself (addresses, ports, TOS and
// TTL rewritten, checksums updated incrementally, sent with
// bpf_redirect_neigh) and counts them in the flow's entry, and the relay's
// socket no longer sees them. Removing the flow gives the direction back
// to the socket at once, with its final counters.
//
// Only IPv4 is handled; everything the program does not recognise as a
// flow's datagram goes on to the stack unchanged. Load needs Linux 6.6 or
// later (TCX) and CAP_BPF with CAP_NET_ADMIN (or root); it fails with an
// error saying why otherwise, and the relay then carries everything in
// userspace.
//
// A Program is safe for concurrent use. Close detaches it; nothing is
// pinned, and the kernel detaches the links by itself if the process dies.
package fastpath
