package fastpath

// The program is compiled with clang by bpf2go; the objects and their Go
// bindings (relay_bpfel.go, relay_bpfeb.go) are committed, so building
// edge-sbc needs no clang. After changing bpf/relay.c, on Debian:
//
//	apt-get install clang llvm libbpf-dev linux-libc-dev
//	go generate ./media/fastpath

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -type fp_key -type fp_value -type fp_totals relay bpf/relay.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
