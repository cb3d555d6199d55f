package hep

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func samplePacket() Packet {
	return Packet{
		Time:          time.Unix(1700000000, 123456000),
		Src:           netip.MustParseAddrPort("192.0.2.1:5061"),
		Dst:           netip.MustParseAddrPort("198.51.100.2:40123"),
		Protocol:      ProtocolTCP,
		ProtoType:     TypeSIP,
		NodeID:        7,
		Password:      "pw",
		CorrelationID: "c1",
		Payload:       []byte("OPTIONS sips:x SIP/2.0\r\n\r\n"),
	}
}

// TestEncodingLayout checks the bytes chunk by chunk against the HEP v3
// layout (vendor, type, length including the 6-byte chunk header, value).
func TestEncodingLayout(t *testing.T) {
	p := samplePacket()
	b, err := AppendPacket(nil, &p)
	if err != nil {
		t.Fatal(err)
	}
	want := "48455033" + hex16(len(b)) +
		"0000" + "0001" + "0007" + "02" + // IPv4
		"0000" + "0002" + "0007" + "06" + // TCP
		"0000" + "0003" + "000a" + "c0000201" +
		"0000" + "0004" + "000a" + "c6336402" +
		"0000" + "0007" + "0008" + "13c5" + // 5061
		"0000" + "0008" + "0008" + "9cbb" + // 40123
		"0000" + "0009" + "000a" + "6553f100" + // 1700000000
		"0000" + "000a" + "000a" + "0001e240" + // 123456 µs
		"0000" + "000b" + "0007" + "01" + // SIP
		"0000" + "000c" + "000a" + "00000007" +
		"0000" + "000e" + "0008" + hex.EncodeToString([]byte("pw")) +
		"0000" + "0011" + "0008" + hex.EncodeToString([]byte("c1")) +
		"0000" + "000f" + hex16(6+len(p.Payload)) + hex.EncodeToString(p.Payload)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding:\n got %s\nwant %s", got, want)
	}
	if p.Size() != len(b) {
		t.Fatalf("Size %d, encoded %d", p.Size(), len(b))
	}
}

func hex16(n int) string { return hex.EncodeToString(binary.BigEndian.AppendUint16(nil, uint16(n))) }

func TestRoundTrip(t *testing.T) {
	v6 := samplePacket()
	v6.Src, v6.Dst = netip.MustParseAddrPort("[2001:db8::1]:5061"), netip.MustParseAddrPort("[2001:db8::2]:5062")
	bare := samplePacket()
	bare.Password, bare.CorrelationID, bare.Payload = "", "", nil
	mapped := samplePacket()
	mapped.Src = netip.MustParseAddrPort("[::ffff:192.0.2.1]:5061")
	for name, p := range map[string]Packet{"ipv4": samplePacket(), "ipv6": v6, "no password, correlation id or payload": bare, "v4-mapped source": mapped} {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("xx")
			b, err := AppendPacket(prefix, &p)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:2]) != "xx" {
				t.Fatal("AppendPacket did not append")
			}
			got, n, err := Decode(append(b[2:], "trailing"...))
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b)-2 {
				t.Fatalf("consumed %d of %d", n, len(b)-2)
			}
			want := p
			want.Src = unmap(p.Src)
			if !equalPackets(got, want) {
				t.Fatalf("decoded %+v\nwant    %+v", got, want)
			}
		})
	}
}

func equalPackets(a, b Packet) bool {
	if !bytes.Equal(a.Payload, b.Payload) || !a.Time.Equal(b.Time) {
		return false
	}
	a.Payload, b.Payload, a.Time, b.Time = nil, nil, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func TestRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		p := Packet{
			Time:      time.Unix(int64(r.Uint32()), int64(r.IntN(1e6))*1000),
			Protocol:  uint8(r.UintN(256)),
			ProtoType: uint8(r.UintN(256)),
			NodeID:    r.Uint32(),
			Payload:   make([]byte, r.IntN(3000)),
		}
		for i := range p.Payload {
			p.Payload[i] = byte(r.UintN(256))
		}
		if r.IntN(2) == 0 {
			p.Password = string(p.Payload[:min(len(p.Payload), r.IntN(40))])
			p.CorrelationID = string(p.Payload[len(p.Payload)/2:][:min(len(p.Payload)/2, 36)])
		}
		var a, b [16]byte
		for i := range a {
			a[i], b[i] = byte(r.UintN(256)), byte(r.UintN(256))
		}
		if r.IntN(2) == 0 {
			p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), uint16(r.UintN(65536)))
			p.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(r.UintN(65536)))
		} else {
			p.Src = netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), uint16(r.UintN(65536)))
			p.Dst = netip.AddrPortFrom(netip.AddrFrom16(b).Unmap(), uint16(r.UintN(65536)))
		}
		enc, err := AppendPacket(nil, &p)
		if errors.Is(err, ErrAddress) {
			continue // a random IPv6 address that unmapped to IPv4
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := Decode(enc)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if !equalPackets(got, p) {
			t.Fatalf("decoded %+v\nwant    %+v", got, p)
		}
	}
}

func TestEncodeRefused(t *testing.T) {
	p := samplePacket()
	p.Payload = make([]byte, MaxPacket)
	if _, err := AppendPacket(nil, &p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	p = samplePacket()
	p.Dst = netip.MustParseAddrPort("[2001:db8::2]:5062")
	if _, err := AppendPacket(nil, &p); !errors.Is(err, ErrAddress) {
		t.Fatalf("mixed families: %v", err)
	}
	p = samplePacket()
	p.Src = netip.AddrPort{}
	if _, err := AppendPacket(nil, &p); !errors.Is(err, ErrAddress) {
		t.Fatalf("no source: %v", err)
	}
}

func TestDecodeRefused(t *testing.T) {
	p := samplePacket()
	good, err := AppendPacket(nil, &p)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"cut", good[:len(good)-1], ErrShort},
		{"magic", mut(func(b []byte) []byte { b[3] = '2'; return b }), ErrMalformed},
		{"total below header", mut(func(b []byte) []byte { b[4], b[5] = 0, 3; return b }), ErrMalformed},
		{"chunk past the end", mut(func(b []byte) []byte { b[10], b[11] = 0xff, 0xff; return b }), ErrMalformed},
		{"chunk shorter than its header", mut(func(b []byte) []byte { b[10], b[11] = 0, 2; return b }), ErrMalformed},
		{"family chunk of 2 bytes", mut(func(b []byte) []byte { b[11] = 8; return b }), ErrMalformed},
		{"IPv6 family with IPv4 addresses", mut(func(b []byte) []byte { b[12] = FamilyIPv6; return b }), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Decode(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A chunk of another vendor is skipped.
	ext := append([]byte{}, good...)
	ext = append(ext, 0, 9, 0, 1, 0, 7, 42)
	binary.BigEndian.PutUint16(ext[4:], uint16(len(ext)))
	got, _, err := Decode(ext)
	if err != nil || !equalPackets(got, p) {
		t.Fatalf("vendor chunk: %v %+v", err, got)
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes back to a
// packet that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	p := samplePacket()
	b, _ := AppendPacket(nil, &p)
	f.Add(b)
	p.Src, p.Dst = netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2")
	p.Password = ""
	b, _ = AppendPacket(nil, &p)
	f.Add(b)
	f.Add([]byte("HEP3\x00\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := Decode(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		enc, err := AppendPacket(nil, &p)
		if err != nil {
			if errors.Is(err, ErrAddress) || errors.Is(err, ErrTooLarge) {
				return // e.g. an IPv6 chunk holding a v4-mapped address; or unknown chunks made room
			}
			t.Fatal(err)
		}
		q, _, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded packet refused: %v", err)
		}
		if !equalPackets(p, q) {
			t.Fatalf("round trip changed the packet:\n%+v\n%+v", p, q)
		}
	})
}
