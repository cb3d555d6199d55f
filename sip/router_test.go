package sip

import (
	"errors"
	"testing"

	"github.com/edge-sbc/edge-sbc/config"
)

func routerConfig() *config.Config {
	return &config.Config{
		Node: config.Node{FQDN: "sbc.example.com", Domains: []string{"example.com", "sbc.example.com"}},
		Listen: []config.Listen{
			{Addr: "0.0.0.0:5061", ClientAuth: "optional", UnauthenticatedTrunk: "public"},
			{Addr: "0.0.0.0:5062", ClientAuth: "required"},
		},
		Trunks: []config.Trunk{
			{Name: "webex", URI: "sips:example.webex.com", Identity: "callservice.ciscospark.com"},
			{Name: "pbx", URI: "sips:pbx.corp.example.com:5061", Identity: "pbx.corp.example.com"},
			{Name: "emergency", URI: "sips:psap.example.net", Identity: "psap.example.net"},
			{Name: "lab", URI: "sips:lab.example.com", Identity: "lab.example.com"},
			{Name: "public"},
		},
		Routes: []config.Route{
			{From: "webex", To: "emergency", RURIUserPrefix: "911"},
			{From: "webex", To: "lab", RURIDomain: "Lab.Example.com"},
			{From: "webex", To: "pbx"},
			{From: "pbx", To: "webex"},
			{From: "public", To: "pbx"},
		},
	}
}

func TestRouter(t *testing.T) {
	r := NewRouter(routerConfig())
	cases := []struct {
		name             string
		from, user, host string
		want             string // trunk name, or "" with wantErr
		wantErr          error
	}{
		{"authenticated trunk, catch-all", "webex", "alice", "example.com", "pbx", nil},
		{"authenticated trunk may reach a foreign domain", "webex", "alice", "elsewhere.org", "pbx", nil},
		{"ruri_user_prefix match", "webex", "911", "example.com", "emergency", nil},
		{"ruri_user_prefix is a prefix", "webex", "9115551234", "example.com", "emergency", nil},
		{"ruri_user_prefix no match", "webex", "811", "example.com", "pbx", nil},
		{"ruri_domain match, case-insensitive", "webex", "bob", "LAB.example.COM", "lab", nil},
		{"other direction", "pbx", "bob", "webex.com", "webex", nil},
		{"unauthenticated to own domain", "public", "alice", "example.com", "pbx", nil},
		{"unauthenticated to own FQDN, any case", "public", "alice", "SBC.Example.Com", "pbx", nil},
		{"unauthenticated to own domain with trailing dot", "public", "alice", "example.com.", "pbx", nil},
		{"unauthenticated to a foreign domain", "public", "alice", "elsewhere.org", "", ErrNotOwnDomain},
		{"unauthenticated to an IP literal", "public", "alice", "192.0.2.1", "", ErrNotOwnDomain},
		{"unauthenticated to a subdomain of ours", "public", "alice", "evil.example.com", "", ErrNotOwnDomain},
		{"no route from this trunk", "lab", "alice", "example.com", "", ErrNoRoute},
		{"unknown trunk", "nobody", "alice", "example.com", "", ErrNoRoute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Route(tc.from, tc.user, tc.host)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Route = %v, %v; want error %v", got, err, tc.wantErr)
				}
				if code := statusFor(err).code; code != map[error]int{ErrNotOwnDomain: 403, ErrNoRoute: 404}[tc.wantErr] {
					t.Fatalf("statusFor(%v) = %d", err, code)
				}
				return
			}
			if err != nil || got == nil || got.To != tc.want {
				t.Fatalf("Route = %v, %v; want trunk %s", got, err, tc.want)
			}
		})
	}
}

// TestRouterRouteToMissingTrunkSkipped: a route whose target trunk does not
// exist is skipped (Validate rejects such configs; the router must not
// return nil without an error).
func TestRouterRouteToMissingTrunkSkipped(t *testing.T) {
	cfg := routerConfig()
	cfg.Routes = append([]config.Route{{From: "pbx", To: "ghost"}}, cfg.Routes...)
	got, err := NewRouter(cfg).Route("pbx", "bob", "webex.com")
	if err != nil || got == nil || got.To != "webex" {
		t.Fatalf("Route = %v, %v; want webex", got, err)
	}
}
