// Package api serves the controller's admin API (/api/v1, JSON, bearer
// tokens with roles), the agents' enrolment endpoint, /healthz and
// /metrics.
//
// Conventions every handler follows: request bodies are limited in size
// and decoded strictly (unknown fields are errors); errors are JSON
// {"error": "...", "problems": [...]} with a fitting status; each request
// has an id (X-Request-Id, generated when absent) that the audit log
// records; mutations go through Raft, and their audit entry is written by
// the same Raft command.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/alertstore"
	"github.com/palisade-sec/palisade/controller/eventstore"
	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/liveness"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// Deps are what the API needs from the rest of the controller.
type Deps struct {
	Store    *store.Store
	Liveness *liveness.Tracker
	// NATSURLs lists the client URLs agents are told to connect to.
	NATSURLs func() []string
	// AgentJWT, when set (external NATS in operator mode), issues an
	// enrolling agent's NATS user JWT for its host id and public nkey.
	AgentJWT func(hostID, nkey string) (string, error)
	Logger   *slog.Logger
	Gatherer prometheus.Gatherer
	// Events holds each host's recent events.
	Events *eventstore.Store
	// Alerts holds recent alerts by id.
	Alerts *alertstore.Store
	// ClientTLS is the trust for calls to other nodes (nil: plain http).
	ClientTLS *tls.Config
	Now       func() time.Time
}

// Server is the HTTP handler of the API.
type Server struct {
	d   Deps
	mux *routeMux
	// raftLeaderURL returns the leader's API URL (tests may replace it).
	forwarder *forwarder
	// probe asks other nodes for their health (cluster status).
	probe *http.Client
}

// New builds the handler.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Gatherer == nil {
		d.Gatherer = prometheus.DefaultGatherer
	}
	if d.Events == nil {
		d.Events = eventstore.New(0)
	}
	if d.Alerts == nil {
		d.Alerts = alertstore.New(0)
	}
	s := &Server{d: d, mux: newRouteMux(),
		probe: &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: d.ClientTLS}}}
	s.forwarder = newForwarder(s)
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.d.Gatherer, promhttp.HandlerOpts{}))

	s.mux.HandleFunc("GET /api/v1/enroll/info", s.enrollInfo)
	s.mux.HandleFunc("POST /api/v1/enroll", s.enroll)

	s.mux.Handle("GET /api/v1/hosts", s.auth(palisadev1.Role_ROLE_VIEWER, s.listHosts))
	s.mux.Handle("GET /api/v1/hosts/{id}", s.auth(palisadev1.Role_ROLE_VIEWER, s.getHost))
	s.mux.Handle("GET /api/v1/hosts/{id}/events", s.auth(palisadev1.Role_ROLE_VIEWER, s.listHostEvents))
	s.mux.Handle("POST /api/v1/enroll-tokens", s.auth(palisadev1.Role_ROLE_ADMIN, s.createEnrollToken))
	s.mux.Handle("GET /api/v1/enroll-tokens", s.auth(palisadev1.Role_ROLE_ADMIN, s.listEnrollTokens))
	s.mux.Handle("GET /api/v1/audit", s.auth(palisadev1.Role_ROLE_ADMIN, s.listAudit))
	s.v1Routes()

	s.mux.HandleFunc("/", s.noRoute)
}

// noRoute answers 405 (with Allow) when the path exists under another
// method, 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := r.Header.Get("X-Request-Id")
	if !validRequestID.MatchString(rid) {
		rid = secret.ID("req-")
	}
	w.Header().Set("X-Request-Id", rid)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, rid))
	if s.forwarder.shouldForward(r) {
		s.forwarder.forward(w, r)
		return
	}
	if err := s.consistentRead(r); err != nil {
		writeError(w, http.StatusServiceUnavailable, "linearizable read failed: "+err.Error()+"; retry")
		return
	}
	s.mux.ServeHTTP(w, r)
}

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

type (
	requestIDKey struct{}
	principalKey struct{}
)

// principal is the authenticated caller.
type principal struct {
	TokenID string
	Name    string
	Role    palisadev1.Role
}

func (p principal) actor() string { return "token:" + p.Name }

func requestID(ctx context.Context) string {
	v, _ := ctx.Value(requestIDKey{}).(string)
	return v
}

func caller(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// auth admits requests that carry a valid, unexpired, unrevoked bearer
// token whose role is at least min. The route table reads the role back
// from the returned handler (role matrix tests, OpenAPI check).
func (s *Server) auth(min palisadev1.Role, h http.HandlerFunc) http.Handler {
	return &authHandler{min: min, h: h, s: s}
}

type authHandler struct {
	min palisadev1.Role
	h   http.HandlerFunc
	s   *Server
}

func (a *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, min := a.s, a.min
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="palisade"`)
		writeError(w, http.StatusUnauthorized, "missing bearer token")
		return
	}
	var (
		tok   *palisadev1.APIToken
		found bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { tok, found = st.APITokenByHash(secret.Hash(strings.TrimSpace(raw))) })
	switch {
	case !found:
		writeError(w, http.StatusUnauthorized, "invalid token")
		return
	case tok.GetRevoked():
		writeError(w, http.StatusUnauthorized, "token revoked")
		return
	case tok.GetExpiresAt() != nil && !s.d.Now().Before(tok.GetExpiresAt().AsTime()):
		writeError(w, http.StatusUnauthorized, "token expired")
		return
	case tok.GetRole() < min:
		writeError(w, http.StatusForbidden, fmt.Sprintf("role %s may not do this (needs %s)", RoleName(tok.GetRole()), RoleName(min)))
		return
	}
	p := principal{TokenID: tok.GetId(), Name: tok.GetName(), Role: tok.GetRole()}
	ctx := context.WithValue(r.Context(), principalKey{}, p)
	if isMutation(r.Method) {
		var ok bool
		if r, ok = withIdempotency(w, r.WithContext(ctx), p); !ok {
			return
		}
		ctx = r.Context()
	}
	a.h(w, r.WithContext(ctx))
}

// RoleName is the API's name for a role (the inverse of ParseRole).
func RoleName(r palisadev1.Role) string {
	switch r {
	case palisadev1.Role_ROLE_VIEWER:
		return "viewer"
	case palisadev1.Role_ROLE_RESPONDER:
		return "responder"
	case palisadev1.Role_ROLE_ADMIN:
		return "admin"
	}
	return "none"
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	addr, id := s.d.Store.Leader()
	status := http.StatusOK
	body := apiv1.Health{Status: "ok", Node: s.d.Store.NodeID(), State: s.d.Store.State(), Leader: id, LeaderAddr: addr,
		AppliedIndex: s.d.Store.AppliedIndex()}
	if addr == "" {
		status = http.StatusServiceUnavailable
		body.Status = "no leader"
	}
	writeJSON(w, status, body)
}

// propose stamps and applies a command through Raft on behalf of the
// request's caller, with the request's idempotency key if it has one. A
// replay of a command that created a secret (a token) cannot give the
// secret again: it fails with errSecretReplay.
func (s *Server) propose(r *http.Request, actor string, cmd *palisadev1.FSMCommand) (uint64, error) {
	res, err := s.proposeResult(r, actor, cmd, "")
	if err != nil {
		return 0, err
	}
	if res.Replayed {
		return 0, fmt.Errorf("%w (it created %s)", errSecretReplay, res.ResultID)
	}
	return res.Index, res.Err
}

var errSecretReplay = errors.New("this Idempotency-Key already created a secret, which is shown only once: revoke that one and create another")

func (s *Server) proposeResult(r *http.Request, actor string, cmd *palisadev1.FSMCommand, resultID string) (*fsm.Result, error) {
	cmd.Time = timestamppb.New(s.d.Now())
	cmd.RequestId = requestID(r.Context())
	cmd.Actor = actor
	cmd.ResultId = resultID
	if ik, ok := r.Context().Value(idempotencyKey{}).(idempotency); ok {
		cmd.IdempotencyKey, cmd.IdempotencyFingerprint = ik.key, ik.fingerprint
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	return s.d.Store.ApplyResult(ctx, cmd)
}

// commit proposes cmd for the authenticated caller; resultID is the id of
// what the command creates or changes. On any failure it writes the error
// response and returns false. After a replay (a retried Idempotency-Key)
// the result's ResultID is the original request's, the replay header is
// set, and nothing new happened.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, cmd *palisadev1.FSMCommand, resultID string) (*fsm.Result, bool) {
	res, err := s.proposeResult(r, caller(r.Context()).actor(), cmd, resultID)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		s.writeApplyError(w, err)
		return nil, false
	}
	if res.Replayed {
		w.Header().Set(apiv1.HeaderIdempotentReplay, "true")
	}
	return res, true
}

// writeApplyError maps a Raft/FSM error to a response.
func (s *Server) writeApplyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrUncertain):
		writeError(w, http.StatusServiceUnavailable, "the change may or may not have been committed ("+err.Error()+"); retry with the same Idempotency-Key")
	case errors.Is(err, store.ErrNotLeader):
		_, leader := s.d.Store.Leader()
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("this node is not the leader (leader: %q); retry", leader))
	case errors.Is(err, fsm.ErrExists), errors.Is(err, fsm.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, fsm.ErrIdempotencyMismatch), errors.Is(err, errSecretReplay):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, fsm.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, fsm.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		s.d.Logger.Error("apply failed", "err", err)
		writeError(w, http.StatusInternalServerError, "could not commit the change: "+err.Error())
	}
}

type errorBody struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string, problems ...string) {
	writeJSON(w, status, errorBody{Error: msg, Problems: problems})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeBody decodes a JSON body strictly into v. An empty body leaves v
// untouched when allowEmpty. On error it writes the response and returns
// false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) && allowEmpty {
		return true
	}
	if err == nil {
		if dec.More() {
			err = errors.New("trailing data after the JSON object")
		} else if _, e2 := dec.Token(); !errors.Is(e2, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func timeOrNil(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}
