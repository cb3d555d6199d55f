package sip

import (
	"errors"
	"fmt"

	"github.com/edge-sbc/edge-sbc/media"
)

// relayAnchor anchors every call's media on the media.Engine relay.
type relayAnchor struct {
	eng     *media.Engine
	metrics *Metrics
}

// NewMediaAnchor returns the MediaAnchor that rewrites SDP so that media
// flows through eng. The address advertised toward a trunk is its
// media_address, else node.public_ipv4, else media.bind (see advertise).
func NewMediaAnchor(eng *media.Engine, m *Metrics) MediaAnchor {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &relayAnchor{eng: eng, metrics: m}
}

func (r *relayAnchor) NewSession(p SessionParams) (MediaSession, error) {
	modeA, err := parseMode(p.SRTPA)
	if err != nil {
		return nil, err
	}
	modeB, err := parseMode(p.SRTPB)
	if err != nil {
		return nil, err
	}
	s := r.eng.NewSession(media.SessionConfig{
		ModeA:         modeA,
		ModeB:         modeB,
		CallID:        p.CallID,
		AdvertiseA:    p.AdvertiseA,
		AdvertiseB:    p.AdvertiseB,
		AllowPlainRTP: p.AllowPlainRTP,
		OnTimeout:     p.OnTimeout,
	})
	return &relaySession{s: s, m: r.metrics}, nil
}

// HasRoom is media.Engine.HasRoom (roomAnchor).
func (r *relayAnchor) HasRoom(streams int) bool { return r.eng.HasRoom(streams) }

func parseMode(s string) (media.SRTPMode, error) {
	if s == "" {
		return media.SRTPPassthrough, nil
	}
	m, err := media.ParseSRTPMode(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMedia, err)
	}
	return m, nil
}

type relaySession struct {
	s *media.Session
	m *Metrics
}

func mediaSide(s Side) media.Side {
	if s == SideA {
		return media.SideA
	}
	return media.SideB
}

func (r *relaySession) Offer(from Side, sdp []byte) ([]byte, error) {
	out, err := r.s.Offer(mediaSide(from), sdp)
	return out, mediaError(err)
}

func (r *relaySession) ProvisionalAnswer(from Side, sdp []byte) ([]byte, error) {
	out, err := r.s.ProvisionalAnswer(mediaSide(from), sdp)
	return out, mediaError(err)
}

func (r *relaySession) Answer(from Side, sdp []byte) ([]byte, error) {
	out, err := r.s.Answer(mediaSide(from), sdp)
	return out, mediaError(err)
}

func (r *relaySession) Reject(from Side) { r.s.Reject(mediaSide(from)) }

func (r *relaySession) Stats() []media.StreamStats { return r.s.Stats() }

func (r *relaySession) Close() map[string]any {
	st := r.s.Close()
	r.m.observeMedia(st)
	degraded := false
	for _, s := range st {
		if s.Degraded() {
			degraded = true
		}
	}
	return map[string]any{"streams": st, "degraded": degraded}
}

// mediaError maps media errors onto the B2BUA's: port exhaustion is 503,
// anything else about the SDP is 488.
func mediaError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, media.ErrPortsExhausted):
		return fmt.Errorf("%w: %w", ErrMediaCapacity, err)
	case errors.Is(err, media.ErrOfferPending):
		return fmt.Errorf("%w: %w", ErrGlare, err)
	default:
		return fmt.Errorf("%w: %w", ErrMedia, err)
	}
}
