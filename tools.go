//go:build tools

package tools

import (
	_ "github.com/cilium/ebpf/cmd/bpf2go"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/emiago/sipgo"
	_ "github.com/miekg/dns"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/pion/srtp/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/rs/zerolog"
	_ "golang.org/x/crypto/ocsp"
	_ "golang.org/x/net/ipv4"
	_ "gopkg.in/yaml.v3"
)
