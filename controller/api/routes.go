package api

import (
	"net/http"
	"sort"
	"strings"
	"sync"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// routeMux is http.ServeMux that remembers every pattern registered on it
// and, for handlers made by auth, the role they need. The role matrix,
// audit and OpenAPI tests walk this list, so a route added anywhere with
// s.mux.Handle cannot escape them.
type routeMux struct {
	*http.ServeMux
	mu     sync.Mutex
	routes []Route
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Route describes one registered route.
type Route struct {
	Method string
	Path   string
	// Role is the least role the route admits; ROLE_UNSPECIFIED for a
	// route without bearer authentication (health, metrics, enrolment).
	Role palisadev1.Role
}

// Mutating reports whether the route changes state (and so must write
// exactly one audit entry).
func (r Route) Mutating() bool { return isMutation(r.Method) }

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.record(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, h)
	m.record(pattern, nil)
}

func (m *routeMux) record(pattern string, h http.Handler) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		return // the catch-all "/"
	}
	rt := Route{Method: method, Path: path}
	if a, ok := h.(*authHandler); ok {
		rt.Role = a.min
	}
	m.mu.Lock()
	m.routes = append(m.routes, rt)
	m.mu.Unlock()
}

// Routes lists every route the API serves, sorted by path and method.
func (s *Server) Routes() []Route {
	s.mux.mu.Lock()
	out := append([]Route(nil), s.mux.routes...)
	s.mux.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func isMutation(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// v1Routes registers the admin API beyond the skeleton's routes.
func (s *Server) v1Routes() {
	const (
		viewer    = palisadev1.Role_ROLE_VIEWER
		responder = palisadev1.Role_ROLE_RESPONDER
		admin     = palisadev1.Role_ROLE_ADMIN
	)
	s.mux.HandleFunc("GET /api/v1/openapi.yaml", s.openAPI)

	s.mux.Handle("PUT /api/v1/hosts/{id}/labels", s.auth(admin, s.setHostLabels))
	s.mux.Handle("POST /api/v1/hosts/{id}/quarantine", s.auth(responder, s.quarantineHost))
	s.mux.Handle("POST /api/v1/hosts/{id}/release", s.auth(responder, s.releaseHost))
	s.mux.Handle("POST /api/v1/hosts/{id}/kill", s.auth(responder, s.killProcess))

	s.mux.Handle("GET /api/v1/actions", s.auth(viewer, s.listActions))
	s.mux.Handle("GET /api/v1/actions/{id}", s.auth(viewer, s.getAction))

	s.mux.Handle("GET /api/v1/incidents", s.auth(viewer, s.listIncidents))
	s.mux.Handle("POST /api/v1/incidents", s.auth(responder, s.createIncident))
	s.mux.Handle("GET /api/v1/incidents/{id}", s.auth(viewer, s.getIncident))
	s.mux.Handle("GET /api/v1/incidents/{id}/alerts", s.auth(viewer, s.listIncidentAlerts))
	s.mux.Handle("POST /api/v1/incidents/{id}/acknowledge", s.auth(responder, s.acknowledgeIncident))
	s.mux.Handle("POST /api/v1/incidents/{id}/resolve", s.auth(responder, s.resolveIncident))

	s.mux.Handle("GET /api/v1/policies", s.auth(viewer, s.listPolicies))
	s.mux.Handle("POST /api/v1/policies", s.auth(admin, s.applyPolicy))
	s.mux.Handle("GET /api/v1/policies/{version}", s.auth(viewer, s.getPolicy))
	s.mux.Handle("POST /api/v1/policies/{version}/rollback", s.auth(admin, s.rollbackPolicy))

	s.mux.Handle("GET /api/v1/iocs", s.auth(viewer, s.listIOCs))
	s.mux.Handle("POST /api/v1/iocs", s.auth(admin, s.addIOC))
	s.mux.Handle("DELETE /api/v1/iocs/{id}", s.auth(admin, s.removeIOC))

	s.mux.Handle("GET /api/v1/leaked-credentials", s.auth(viewer, s.listLeaks))
	s.mux.Handle("POST /api/v1/leaked-credentials", s.auth(admin, s.addLeak))
	s.mux.Handle("POST /api/v1/leaked-credentials/secret-scanning", s.auth(admin, s.secretScanning))
	s.mux.Handle("GET /api/v1/leaked-credentials/{id}/blast-radius", s.auth(viewer, s.leakBlastRadius))

	s.mux.Handle("GET /api/v1/tokens", s.auth(admin, s.listAPITokens))
	s.mux.Handle("POST /api/v1/tokens", s.auth(admin, s.createAPIToken))
	s.mux.Handle("DELETE /api/v1/tokens/{id}", s.auth(admin, s.revokeAPIToken))

	s.mux.Handle("GET /api/v1/cluster", s.auth(viewer, s.clusterStatus))
	s.mux.Handle("POST /api/v1/cluster/join", s.auth(admin, s.clusterJoin))
	s.mux.Handle("DELETE /api/v1/cluster/nodes/{id}", s.auth(admin, s.clusterRemove))
}
