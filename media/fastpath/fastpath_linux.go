package fastpath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Program is the loaded and attached fast path. Safe for concurrent use.
type Program struct {
	bind   netip.Addr // the relay's bind address
	objs   relayObjects
	links  []link.Link
	ifaces []string

	mu     sync.Mutex // guards locals
	locals map[netip.Addr]bool
}

// Load loads the program and attaches it, with TCX on ingress, to the
// interfaces that carry the relay's addresses: for an unspecified bind
// address (0.0.0.0, or "::" whose IPv4 peers the program serves) every
// interface that is up with an IPv4 address, loopback included; otherwise
// the interface that has bind. The error says why it cannot (kernel older
// than 6.6, missing CAP_BPF or CAP_NET_ADMIN, an IPv6 bind address); then
// nothing is left loaded.
func Load(bind netip.Addr) (*Program, error) {
	bind = bind.Unmap()
	if bind.Is6() && !bind.IsUnspecified() {
		return nil, fmt.Errorf("%w: IPv6 bind address %v (the fast path handles IPv4 only)", ErrUnsupported, bind)
	}
	p := &Program{bind: bind, locals: map[netip.Addr]bool{}}
	if err := loadRelayObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("fastpath: load the program: %w", explain(err))
	}
	ifs, addrs, err := p.carriers()
	if err != nil {
		_ = p.objs.Close()
		return nil, err
	}
	if len(ifs) == 0 {
		_ = p.objs.Close()
		return nil, fmt.Errorf("fastpath: no interface carries %v", bind)
	}
	if err := p.setLocals(addrs); err != nil {
		_ = p.objs.Close()
		return nil, err
	}
	for _, ifc := range ifs {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifc.Index,
			Program:   p.objs.EdgeSbcRelay,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("fastpath: attach to %s (TCX ingress, Linux 6.6 or later): %w", ifc.Name, explain(err))
		}
		p.links = append(p.links, l)
		p.ifaces = append(p.ifaces, ifc.Name)
	}
	return p, nil
}

// explain adds what is missing to a permission error.
func explain(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (needs CAP_BPF and CAP_NET_ADMIN)", err)
	}
	return err
}

// carriers returns the interfaces to attach to and the relay's addresses.
func (p *Program) carriers() ([]net.Interface, []netip.Addr, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("fastpath: list interfaces: %w", err)
	}
	var ifs []net.Interface
	var addrs []netip.Addr
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			return nil, nil, fmt.Errorf("fastpath: addresses of %s: %w", ifc.Name, err)
		}
		carries := false
		for _, a := range as {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if ip = ip.Unmap(); !ok || !ip.Is4() {
				continue
			}
			if p.bind.IsUnspecified() || ip == p.bind {
				carries = true
				addrs = append(addrs, ip)
			}
		}
		if carries {
			ifs = append(ifs, ifc)
		}
	}
	return ifs, addrs, nil
}

// setLocals makes addrs the relay's addresses in the locals map.
func (p *Program) setLocals(addrs []netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a] = true
		if p.locals[a] {
			continue
		}
		if err := p.objs.Locals.Put(addrKey(a), uint8(1)); err != nil {
			return fmt.Errorf("fastpath: add local address %v: %w", a, err)
		}
		p.locals[a] = true
	}
	for a := range p.locals {
		if !want[a] {
			if err := p.objs.Locals.Delete(addrKey(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("fastpath: remove local address %v: %w", a, err)
			}
			delete(p.locals, a)
		}
	}
	return nil
}

// Refresh re-reads the relay's addresses (an address added to an attached
// interface later, such as a keepalived one, is served from then on;
// interfaces that appear later are not attached).
func (p *Program) Refresh() error {
	_, addrs, err := p.carriers()
	if err != nil {
		return err
	}
	return p.setLocals(addrs)
}

// addrKey is an IPv4 address as the program reads it (network order in
// memory).
func addrKey(a netip.Addr) uint32 {
	b := a.As4()
	return nativeU32(b)
}

func nativeU32(b [4]byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// portKey is a port in network order as the program reads it.
func portKey(port uint16) uint16 { return port>>8 | port<<8 }

// Close detaches the program from every interface and frees it and its
// maps.
func (p *Program) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fastpath: close: %w", err)
	}
	return nil
}

// Interfaces returns the names of the interfaces the program is attached to.
func (p *Program) Interfaces() []string { return append([]string(nil), p.ifaces...) }

func (k Key) raw() relayFpKey {
	return relayFpKey{Saddr: addrKey(k.src.Addr().Unmap()), Sport: portKey(k.src.Port()), Dport: portKey(k.port)}
}

// Add installs f: from now on the program forwards its datagrams. It fails
// if f is not IPv4, if its destination has no route, or if an entry with
// its key exists.
func (p *Program) Add(f Flow) (Key, error) {
	src, to := f.Src.Addr().Unmap(), f.To.Addr().Unmap()
	if !src.Is4() || !to.Is4() {
		return Key{}, fmt.Errorf("%w: flow %v -> %v is not IPv4", ErrUnsupported, f.Src, f.To)
	}
	r, err := lookupRoute(to)
	if err != nil {
		return Key{}, err
	}
	from := f.From.Addr().Unmap()
	if !from.IsValid() || from.IsUnspecified() {
		from = r.src
	}
	if !from.Is4() {
		return Key{}, fmt.Errorf("fastpath: no IPv4 source address toward %v", to)
	}
	v := relayFpValue{
		NewSaddr: addrKey(from), NewDaddr: addrKey(to),
		NewSport: portKey(f.From.Port()), NewDport: portKey(f.To.Port()),
		Ifindex: uint32(r.ifindex),
		Ssrc:    f.SSRC, Clock: f.Clock, Pt: f.PT, Tos: f.TOS,
	}
	switch f.Kind {
	case KindRTP:
		v.Kind = 1
	case KindRTCP:
		v.Kind = 2
	}
	k := f.Key()
	if err := p.objs.Flows.Update(k.raw(), &v, ebpf.UpdateNoExist); err != nil {
		return Key{}, fmt.Errorf("fastpath: add flow %v -> :%d: %w", f.Src, f.Port, err)
	}
	return k, nil
}

// Remove deletes the entry of k, atomically with reading its final
// counters: the next datagram goes to the relay's socket.
func (p *Program) Remove(k Key) (Counters, error) {
	var v relayFpValue
	if err := p.objs.Flows.LookupAndDelete(k.raw(), &v); err != nil {
		return Counters{}, fmt.Errorf("fastpath: remove flow %v -> :%d: %w", k.src, k.port, err)
	}
	return counters(&v), nil
}

// Read returns the counters of k so far.
func (p *Program) Read(k Key) (Counters, error) {
	var v relayFpValue
	if err := p.objs.Flows.Lookup(k.raw(), &v); err != nil {
		return Counters{}, fmt.Errorf("fastpath: read flow %v -> :%d: %w", k.src, k.port, err)
	}
	return counters(&v), nil
}

func counters(v *relayFpValue) Counters {
	c := Counters{
		Packets: v.Packets, Bytes: v.Bytes, RTCPPackets: v.RtcpPackets, RTCPBytes: v.RtcpBytes,
		Expected: v.PrevExpected, Lost: v.PrevLost, OutOfOrder: v.OutOfOrder, LastNs: v.LastNs,
	}
	if v.SeqInit != 0 && v.Received > 0 {
		exp := v.Cycles + uint64(v.MaxSeq) - uint64(v.BaseSeq) + 1
		c.Expected += exp
		if exp > v.Received {
			c.Lost += exp - v.Received
		}
	}
	if v.Clock > 0 {
		c.JitterUs = v.Jitter * 1e6 / (16 * uint64(v.Clock))
		c.MaxJitterUs = v.MaxJitter * 1e6 / (16 * uint64(v.Clock))
	}
	return c
}

// Totals returns the datagrams and UDP payload bytes the program forwarded
// since it was loaded (over every flow, removed ones included).
func (p *Program) Totals() (packets, bytes uint64) {
	var per []relayFpTotals
	if err := p.objs.Totals.Lookup(uint32(0), &per); err != nil {
		return 0, 0
	}
	for _, t := range per {
		packets += t.Packets
		bytes += t.Bytes
	}
	return packets, bytes
}

// Now returns CLOCK_MONOTONIC in nanoseconds, the clock of Counters.LastNs.
func (p *Program) Now() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
