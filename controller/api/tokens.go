package api

import (
	"net/http"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// ParseRole is the inverse of the API's role names.
func ParseRole(s string) (palisadev1.Role, bool) {
	for _, r := range []palisadev1.Role{palisadev1.Role_ROLE_VIEWER, palisadev1.Role_ROLE_RESPONDER, palisadev1.Role_ROLE_ADMIN} {
		if RoleName(r) == s {
			return r, true
		}
	}
	return 0, false
}

func (s *Server) listAPITokens(w http.ResponseWriter, r *http.Request) {
	var ts []*palisadev1.APIToken
	s.d.Store.FSM().Read(func(st *fsm.State) { ts = st.APITokens() })
	out := apiv1.APITokenList{Tokens: make([]apiv1.APIToken, 0, len(ts))}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, tokenView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createAPIToken(w http.ResponseWriter, r *http.Request) {
	var req apiv1.CreateAPITokenRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	var problems []string
	if req.Name == "" || len(req.Name) > 63 || !isPrintableName(req.Name) {
		problems = append(problems, "name: 1-63 characters of letters, digits, '.', '_', '-' and '@'")
	}
	role, ok := ParseRole(req.Role)
	if !ok {
		problems = append(problems, "role: want viewer, responder or admin")
	}
	exp, tp := s.ttlParam(req.TTL)
	problems = append(problems, tp...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid token request", problems...)
		return
	}
	tok := secret.New(secret.APITokenPrefix)
	at := &palisadev1.APIToken{Id: secret.ID("tok-"), Name: req.Name, Role: role, Sha256: secret.Hash(tok),
		CreatedAt: timestamppb.New(s.d.Now()), ExpiresAt: exp, CreatedBy: caller(r.Context()).actor()}
	if _, err := s.propose(r, caller(r.Context()).actor(), &palisadev1.FSMCommand{
		Cmd: &palisadev1.FSMCommand_CreateApiToken{CreateApiToken: &palisadev1.CreateAPITokenCmd{Token: at}}}); err != nil {
		s.writeApplyError(w, err)
		return
	}
	v := tokenView(at)
	v.Token = tok
	writeJSON(w, http.StatusCreated, v)
}

func isPrintableName(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

func (s *Server) revokeAPIToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RevokeApiToken{
		RevokeApiToken: &palisadev1.RevokeAPITokenCmd{TokenId: id}}}, id); !ok {
		return
	}
	var t *palisadev1.APIToken
	s.d.Store.FSM().Read(func(st *fsm.State) { t, _ = st.APIToken(id) })
	writeJSON(w, http.StatusOK, tokenView(t))
}
