//go:build !linux

package fastpath

import "net/netip"

// Program is the loaded fast path; on this system it cannot be loaded.
type Program struct{}

// Load fails with ErrUnsupported: the fast path needs Linux.
func Load(netip.Addr) (*Program, error) { return nil, ErrUnsupported }

// Close does nothing.
func (p *Program) Close() error { return nil }

// Interfaces returns nil.
func (p *Program) Interfaces() []string { return nil }

// Add fails with ErrUnsupported.
func (p *Program) Add(Flow) (Key, error) { return Key{}, ErrUnsupported }

// Remove fails with ErrUnsupported.
func (p *Program) Remove(Key) (Counters, error) { return Counters{}, ErrUnsupported }

// Read fails with ErrUnsupported.
func (p *Program) Read(Key) (Counters, error) { return Counters{}, ErrUnsupported }

// Totals returns zeros.
func (p *Program) Totals() (packets, bytes uint64) { return 0, 0 }

// Now returns 0.
func (p *Program) Now() uint64 { return 0 }

// Refresh does nothing where the fast path is unsupported.
func (p *Program) Refresh() error { return nil }
