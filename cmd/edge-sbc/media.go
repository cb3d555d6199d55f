package main

import (
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip"
)

// newMediaAnchor returns the media layer the B2BUA rewrites SDP with.
// Until the relay is wired in, SDP passes through unchanged.
func newMediaAnchor(_ *config.Config, _ zerolog.Logger) (sip.MediaAnchor, func(), error) {
	return nil, func() {}, nil
}
