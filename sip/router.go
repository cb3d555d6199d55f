package sip

import (
	"fmt"
	"strings"

	"github.com/edge-sbc/edge-sbc/config"
)

// Router chooses where a call goes. It is an interface so routing can be
// tested without sockets.
type Router interface {
	// Route returns the route a call from trunk from, for Request-URI
	// user@host, takes (its To names the destination trunk).
	Route(from, user, host string) (*config.Route, error)
}

// tableRouter walks config.Routes in order; the first match wins.
type tableRouter struct {
	cfg    *config.Config
	unauth map[string]bool // trunks that accept peers without certificates
}

// NewRouter returns the Router described by cfg.routes.
func NewRouter(cfg *config.Config) Router {
	r := &tableRouter{cfg: cfg, unauth: map[string]bool{}}
	for _, l := range cfg.Listen {
		if l.UnauthenticatedTrunk != "" {
			r.unauth[l.UnauthenticatedTrunk] = true
		}
	}
	return r
}

func (r *tableRouter) Route(from, user, host string) (*config.Route, error) {
	host = strings.ToLower(host)
	if r.unauth[from] && !r.cfg.IsOwnDomain(host) {
		// An unauthenticated peer may only reach our own domains: the
		// SBC is never an open relay.
		return nil, fmt.Errorf("%w: %s (trunk %s accepts unauthenticated peers)", ErrNotOwnDomain, host, from)
	}
	for i := range r.cfg.Routes {
		rt := &r.cfg.Routes[i]
		if rt.From != from {
			continue
		}
		if rt.RURIDomain != "" && !strings.EqualFold(rt.RURIDomain, host) {
			continue
		}
		if rt.RURIUserPrefix != "" && !strings.HasPrefix(user, rt.RURIUserPrefix) {
			continue
		}
		if t := r.cfg.Trunk(rt.To); t != nil {
			return rt, nil
		}
	}
	return nil, fmt.Errorf("%w: from trunk %s to %s@%s", ErrNoRoute, from, user, host)
}
