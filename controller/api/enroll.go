package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Enrolment token lifetimes.
const (
	DefaultEnrollTTL = 24 * time.Hour
	MaxEnrollTTL     = 30 * 24 * time.Hour
)

func (s *Server) cluster() *palisadev1.ClusterInfo {
	var ci *palisadev1.ClusterInfo
	s.d.Store.FSM().Read(func(st *fsm.State) { ci = st.Cluster() })
	return ci
}

func (s *Server) enrollInfo(w http.ResponseWriter, r *http.Request) {
	ci := s.cluster()
	if ci == nil {
		writeError(w, http.StatusServiceUnavailable, "cluster not initialised yet")
		return
	}
	writeJSON(w, http.StatusOK, apiv1.EnrollInfo{
		ClusterID:        ci.GetClusterId(),
		SigningPublicKey: base64.StdEncoding.EncodeToString(ci.GetSigningPublicKey()),
		NATSURLs:         s.d.NATSURLs(),
	})
}

// validateEnroll lists every problem with an enrolment request.
func validateEnroll(req *apiv1.EnrollRequest) []string {
	var p []string
	if req.Token == "" {
		p = append(p, "token: required")
	}
	if req.Hostname == "" {
		p = append(p, "hostname: required")
	}
	for name, v := range map[string]string{"hostname": req.Hostname, "os": req.OS, "arch": req.Arch,
		"kernel": req.Kernel, "agent_version": req.AgentVersion} {
		if len(v) > 255 || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\n\r") {
			p = append(p, name+": must be at most 255 bytes of printable UTF-8")
		}
	}
	if !nkeys.IsValidPublicUserKey(req.NKey) {
		p = append(p, "nkey: not a NATS public user key")
	}
	return p
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req apiv1.EnrollRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	if problems := validateEnroll(&req); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid enrolment request", problems...)
		return
	}
	ci := s.cluster()
	if ci == nil {
		writeError(w, http.StatusServiceUnavailable, "cluster not initialised yet")
		return
	}
	hostID := secret.ID("h")
	// The JWT is issued before the host is recorded: a failure leaves no
	// half-enrolled host and the token unused.
	var userJWT string
	if s.d.AgentJWT != nil {
		var err error
		if userJWT, err = s.d.AgentJWT(hostID, req.NKey); err != nil {
			s.d.Logger.Error("enrolment: issue nats user jwt", "err", err)
			writeError(w, http.StatusInternalServerError, "could not issue the agent's NATS credentials")
			return
		}
	}
	cmd := &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_EnrollHost{EnrollHost: &palisadev1.EnrollHostCmd{
		TokenSha256: secret.Hash(req.Token),
		Host: &palisadev1.Host{
			Id: hostID, Hostname: req.Hostname, Os: req.OS, Arch: req.Arch,
			Kernel: req.Kernel, AgentVersion: req.AgentVersion, Nkey: req.NKey,
		},
	}}}
	_, err := s.propose(r, "agent:"+hostID, cmd)
	switch {
	case errors.Is(err, fsm.ErrTokenInvalid), errors.Is(err, fsm.ErrTokenUsed), errors.Is(err, fsm.ErrTokenExpired):
		s.d.Logger.Warn("enrolment refused", "hostname", req.Hostname, "token", secret.Mask(req.Token), "reason", err)
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	case err != nil:
		s.writeApplyError(w, err)
		return
	}
	s.d.Logger.Info("host enrolled", "host", hostID, "hostname", req.Hostname, "nkey", req.NKey, "nats_jwt", userJWT != "")
	writeJSON(w, http.StatusCreated, apiv1.EnrollResponse{
		HostID:           hostID,
		ClusterID:        ci.GetClusterId(),
		NATSURLs:         s.d.NATSURLs(),
		SigningPublicKey: base64.StdEncoding.EncodeToString(ci.GetSigningPublicKey()),
		NATSUserJWT:      userJWT,
	})
}

func (s *Server) createEnrollToken(w http.ResponseWriter, r *http.Request) {
	var req apiv1.CreateEnrollTokenRequest
	if !decodeBody(w, r, &req, true) {
		return
	}
	var problems []string
	ttl := DefaultEnrollTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("ttl: %q is not a duration", req.TTL))
		case d <= 0 || d > MaxEnrollTTL:
			problems = append(problems, fmt.Sprintf("ttl: must be within (0, %s]", MaxEnrollTTL))
		default:
			ttl = d
		}
	}
	problems = append(problems, validateLabels("labels", req.Labels)...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid enrolment token request", problems...)
		return
	}
	tok := secret.New(secret.EnrollTokenPrefix)
	now := s.d.Now()
	et := &palisadev1.EnrollToken{
		Id:        secret.ID("et-"),
		Sha256:    secret.Hash(tok),
		CreatedAt: timestamppb.New(now),
		ExpiresAt: timestamppb.New(now.Add(ttl)),
		CreatedBy: caller(r.Context()).actor(),
		Labels:    req.Labels,
	}
	if _, err := s.propose(r, caller(r.Context()).actor(), &palisadev1.FSMCommand{
		Cmd: &palisadev1.FSMCommand_CreateEnrollToken{CreateEnrollToken: &palisadev1.CreateEnrollTokenCmd{Token: et}},
	}); err != nil {
		s.writeApplyError(w, err)
		return
	}
	v := enrollTokenView(et)
	v.Token = tok
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) listEnrollTokens(w http.ResponseWriter, r *http.Request) {
	var toks []*palisadev1.EnrollToken
	s.d.Store.FSM().Read(func(st *fsm.State) { toks = st.EnrollTokens() })
	out := apiv1.EnrollTokenList{Tokens: make([]apiv1.EnrollToken, 0, len(toks))}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, enrollTokenView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func enrollTokenView(t *palisadev1.EnrollToken) apiv1.EnrollToken {
	return apiv1.EnrollToken{
		ID: t.GetId(), CreatedAt: timeOrNil(t.GetCreatedAt()), ExpiresAt: timeOrNil(t.GetExpiresAt()),
		UsedByHost: t.GetUsedByHost(), UsedAt: timeOrNil(t.GetUsedAt()), Labels: t.GetLabels(),
	}
}

// validateLabels checks label keys and values: short, printable, no '='.
func validateLabels(path string, labels map[string]string) []string {
	var p []string
	if len(labels) > 64 {
		p = append(p, path+": at most 64 labels")
	}
	for k, v := range labels {
		if k == "" || len(k) > 63 || strings.ContainsAny(k, "= \t\n\x00") || !utf8.ValidString(k) {
			p = append(p, fmt.Sprintf("%s[%q]: key must be 1-63 characters without spaces or '='", path, k))
		}
		if len(v) > 255 || strings.ContainsAny(v, "\n\x00") || !utf8.ValidString(v) {
			p = append(p, fmt.Sprintf("%s[%q]: value must be at most 255 bytes of UTF-8 on one line", path, k))
		}
	}
	return p
}
