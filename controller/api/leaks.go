package api

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Access key id formats: Alibaba Cloud (LTAI + 12-30 alphanumerics) and
// AWS (AKIA/ASIA + 16 uppercase alphanumerics).
var (
	alibabaKeyID = regexp.MustCompile(`^LTAI[A-Za-z0-9]{12,30}$`)
	awsKeyID     = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{16}$`)
)

// maskKeyID keeps the 4-character prefix and the last 4 characters.
func maskKeyID(k string) string {
	if len(k) <= 8 {
		return strings.Repeat("*", len(k))
	}
	return k[:4] + strings.Repeat("*", len(k)-8) + k[len(k)-4:]
}

func (s *Server) listLeaks(w http.ResponseWriter, r *http.Request) {
	var ls []*palisadev1.LeakedCredential
	s.d.Store.FSM().Read(func(st *fsm.State) { ls = st.LeakedCredentials() })
	out := apiv1.LeakedCredentialList{Credentials: make([]apiv1.LeakedCredential, 0, len(ls))}
	for _, l := range ls {
		out.Credentials = append(out.Credentials, leakView(l))
	}
	writeJSON(w, http.StatusOK, out)
}

// addLeak records a leaked access key id. The id itself is not stored:
// agents match candidates by sha256 (with the prefix and length to pick
// candidates cheaply); people see the masked form.
func (s *Server) addLeak(w http.ResponseWriter, r *http.Request) {
	var req apiv1.AddLeakedCredentialRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	lc, problems := leakRecord(req)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid leaked credential", problems...)
		return
	}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_AddLeakedCredential{
		AddLeakedCredential: &palisadev1.AddLeakedCredentialCmd{Credential: lc}}}, lc.GetId())
	if !ok {
		return
	}
	var got *palisadev1.LeakedCredential
	s.d.Store.FSM().Read(func(st *fsm.State) { got, _ = st.LeakedCredential(res.ResultID) })
	writeJSON(w, http.StatusCreated, leakView(got))
}

// leakRecord validates a report and builds the record to store (every
// problem listed).
func leakRecord(req apiv1.AddLeakedCredentialRequest) (*palisadev1.LeakedCredential, []string) {
	var problems []string
	key := strings.TrimSpace(req.KeyID)
	provider := req.Provider
	switch {
	case alibabaKeyID.MatchString(key):
		if provider == "" {
			provider = "alibaba"
		}
	case awsKeyID.MatchString(key):
		if provider == "" {
			provider = "aws"
		}
	default:
		problems = append(problems, "key_id: not an access key id (LTAI… or AKIA…/ASIA…)")
	}
	if provider != "" && provider != "alibaba" && provider != "aws" {
		problems = append(problems, "provider: want alibaba or aws")
	}
	problems = append(problems, checkText("source", req.Source, false)...)
	problems = append(problems, checkText("comment", req.Comment, false)...)
	if len(problems) > 0 {
		return nil, problems
	}
	return &palisadev1.LeakedCredential{
		Id: secret.ID("lc-"), Provider: provider, KeyIdMasked: maskKeyID(key), KeyIdSha256: secret.Hash(key),
		KeyIdPrefix: key[:4], KeyIdLength: uint32(len(key)), Source: req.Source, Comment: req.Comment,
	}, nil
}
