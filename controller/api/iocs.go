package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// canonicalIOC validates value for its type and returns the canonical
// form (addresses and prefixes normalised, hashes lowercase).
func canonicalIOC(typ, value string) (palisadev1.IOCType, string, []string) {
	switch typ {
	case "ip":
		a, err := netip.ParseAddr(value)
		if err != nil {
			return 0, "", []string{fmt.Sprintf("value: %q is not an IP address", value)}
		}
		return palisadev1.IOCType_IOC_TYPE_IP, a.Unmap().String(), nil
	case "cidr":
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return 0, "", []string{fmt.Sprintf("value: %q is not a CIDR", value)}
		}
		return palisadev1.IOCType_IOC_TYPE_CIDR, p.Masked().String(), nil
	case "sha256":
		v := strings.ToLower(strings.TrimPrefix(value, "sha256:"))
		if !sha256Hex.MatchString(v) {
			return 0, "", []string{fmt.Sprintf("value: %q is not 64 hex digits", value)}
		}
		return palisadev1.IOCType_IOC_TYPE_SHA256, v, nil
	}
	return 0, "", []string{"type: want ip, cidr or sha256"}
}

func (s *Server) iocView(i *palisadev1.IOC) apiv1.IOC {
	return apiv1.IOC{
		ID: i.GetId(), Type: iocTypeWord(i.GetType()), Value: i.GetValue(), Source: i.GetSource(), Comment: i.GetComment(),
		CreatedAt: timeOrNil(i.GetCreatedAt()), ExpiresAt: timeOrNil(i.GetExpiresAt()), CreatedBy: i.GetCreatedBy(),
		Expired: i.GetExpiresAt() != nil && !s.d.Now().Before(i.GetExpiresAt().AsTime()),
	}
}

// listIOCs serves GET /api/v1/iocs?type=&include_expired=true.
func (s *Server) listIOCs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	if typ != "" && typ != "ip" && typ != "cidr" && typ != "sha256" {
		writeError(w, http.StatusBadRequest, "invalid query", "type: want ip, cidr or sha256")
		return
	}
	all := q.Get("include_expired") == "true"
	var iocs []*palisadev1.IOC
	s.d.Store.FSM().Read(func(st *fsm.State) { iocs = st.IOCs() })
	out := apiv1.IOCList{IOCs: make([]apiv1.IOC, 0, len(iocs))}
	for _, i := range iocs {
		v := s.iocView(i)
		if (typ == "" || v.Type == typ) && (all || !v.Expired) {
			out.IOCs = append(out.IOCs, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addIOC(w http.ResponseWriter, r *http.Request) {
	var req apiv1.AddIOCRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	typ, value, problems := canonicalIOC(req.Type, req.Value)
	problems = append(problems, checkText("source", req.Source, false)...)
	problems = append(problems, checkText("comment", req.Comment, false)...)
	exp, tp := s.ttlParam(req.TTL)
	problems = append(problems, tp...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid IOC", problems...)
		return
	}
	ioc := &palisadev1.IOC{Id: secret.ID("ioc-"), Type: typ, Value: value, Source: req.Source, Comment: req.Comment, ExpiresAt: exp}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_AddIoc{AddIoc: &palisadev1.AddIOCCmd{Ioc: ioc}}}, ioc.GetId())
	if !ok {
		return
	}
	var got *palisadev1.IOC
	s.d.Store.FSM().Read(func(st *fsm.State) { got, _ = st.IOC(res.ResultID) })
	if got == nil {
		// A replay of an add whose IOC was removed since.
		writeError(w, http.StatusGone, "the IOC this request created ("+res.ResultID+") was removed since")
		return
	}
	writeJSON(w, http.StatusCreated, s.iocView(got))
}

func (s *Server) removeIOC(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RemoveIoc{RemoveIoc: &palisadev1.RemoveIOCCmd{IocId: id}}}, id); !ok {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
