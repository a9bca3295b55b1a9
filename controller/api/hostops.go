package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxReasonLen bounds free-text reasons and notes.
const MaxReasonLen = 1024

func checkText(path, v string, required bool) []string {
	switch {
	case required && strings.TrimSpace(v) == "":
		return []string{path + ": required"}
	case len(v) > MaxReasonLen || !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return []string{fmt.Sprintf("%s: at most %d bytes of UTF-8", path, MaxReasonLen)}
	}
	return nil
}

// hostFilter parses GET /api/v1/hosts filters: label=k=v (repeatable,
// all must match; label=k matches any value), online=true|false,
// quarantined=true|false.
func hostFilter(r *http.Request) (func(apiv1.Host) bool, []string) {
	q := r.URL.Query()
	var problems []string
	type lbl struct{ k, v string }
	var labels []lbl
	var hasVal []bool
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if k == "" {
			problems = append(problems, fmt.Sprintf("label: %q: want key or key=value", l))
			continue
		}
		labels = append(labels, lbl{k, v})
		hasVal = append(hasVal, ok)
	}
	boolParam := func(name string) *bool {
		v := q.Get(name)
		if v == "" {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, name+": want true or false")
			return nil
		}
		return &b
	}
	online, quarantined := boolParam("online"), boolParam("quarantined")
	return func(h apiv1.Host) bool {
		for i, l := range labels {
			v, ok := h.Labels[l.k]
			if !ok || hasVal[i] && v != l.v {
				return false
			}
		}
		if online != nil && h.Online != *online {
			return false
		}
		if quarantined != nil && h.Quarantined != *quarantined {
			return false
		}
		return true
	}, problems
}

func (s *Server) setHostLabels(w http.ResponseWriter, r *http.Request) {
	var req apiv1.SetLabelsRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	id := r.PathValue("id")
	if problems := validateLabels("labels", req.Labels); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid labels", problems...)
		return
	}
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_SetHostLabels{
		SetHostLabels: &palisadev1.SetHostLabelsCmd{HostId: id, Labels: req.Labels}}}, id); !ok {
		return
	}
	s.writeHost(w, http.StatusOK, id)
}

func (s *Server) writeHost(w http.ResponseWriter, status int, id string) {
	var (
		h  *palisadev1.Host
		ok bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { h, ok = st.Host(id) })
	if !ok {
		writeError(w, http.StatusNotFound, "no host "+id)
		return
	}
	writeJSON(w, status, s.hostView(h))
}

func (s *Server) writeAction(w http.ResponseWriter, status int, id string) {
	var (
		a  *palisadev1.Action
		ok bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { a, ok = st.Action(id) })
	if !ok {
		writeError(w, http.StatusNotFound, "no action "+id)
		return
	}
	writeJSON(w, status, actionView(a))
}

func (s *Server) quarantineHost(w http.ResponseWriter, r *http.Request) {
	s.requestQuarantine(w, r, true)
}
func (s *Server) releaseHost(w http.ResponseWriter, r *http.Request) {
	s.requestQuarantine(w, r, false)
}

// requestQuarantine records the requested quarantine state and the action
// that will carry it to the agent; it answers with the action (202: the
// host has not done it yet).
func (s *Server) requestQuarantine(w http.ResponseWriter, r *http.Request, on bool) {
	var req apiv1.QuarantineRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	if problems := checkText("reason", req.Reason, true); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid request", problems...)
		return
	}
	id := r.PathValue("id")
	kind := palisadev1.ActionKind_ACTION_KIND_RELEASE
	if on {
		kind = palisadev1.ActionKind_ACTION_KIND_QUARANTINE
	}
	act := &palisadev1.Action{Id: secret.ID("act-"), HostId: id, Kind: kind, IncidentId: req.IncidentID}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RequestQuarantine{
		RequestQuarantine: &palisadev1.RequestQuarantineCmd{HostId: id, Quarantine: on, Reason: req.Reason, Action: act}}}, act.GetId())
	if !ok {
		return
	}
	s.writeAction(w, http.StatusAccepted, res.ResultID)
}

func (s *Server) killProcess(w http.ResponseWriter, r *http.Request) {
	var req apiv1.KillRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	problems := checkText("reason", req.Reason, true)
	if req.PID == 0 {
		problems = append(problems, "pid: required")
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid request", problems...)
		return
	}
	id := r.PathValue("id")
	act := &palisadev1.Action{Id: secret.ID("act-"), HostId: id, Kind: palisadev1.ActionKind_ACTION_KIND_KILL,
		Pid: req.PID, Tree: req.Tree, Reason: req.Reason, IncidentId: req.IncidentID}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_CreateAction{
		CreateAction: &palisadev1.CreateActionCmd{Action: act}}}, act.GetId())
	if !ok {
		return
	}
	s.writeAction(w, http.StatusAccepted, res.ResultID)
}

// listActions serves GET /api/v1/actions?host=&kind=&state=&limit=.
func (s *Server) listActions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems []string
	host := q.Get("host")
	var kind palisadev1.ActionKind
	if v := q.Get("kind"); v != "" {
		k, ok := parseEnum(v, palisadev1.ActionKind_name, actionKindWord)
		if !ok {
			problems = append(problems, "kind: want quarantine, release, kill, block or hunt-credential")
		}
		kind = k
	}
	var state palisadev1.ActionState
	if v := q.Get("state"); v != "" {
		k, ok := parseEnum(v, palisadev1.ActionState_name, actionStateWord)
		if !ok {
			problems = append(problems, "state: want requested, sent, acked, failed or expired")
		}
		state = k
	}
	limit, lp := limitParam(q.Get("limit"), 100, 10000)
	problems = append(problems, lp...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems...)
		return
	}
	var acts []*palisadev1.Action
	s.d.Store.FSM().Read(func(st *fsm.State) {
		acts = st.Actions(func(a *palisadev1.Action) bool {
			return (host == "" || a.GetHostId() == host) && (kind == 0 || a.GetKind() == kind) && (state == 0 || a.GetState() == state)
		}, limit)
	})
	out := apiv1.ActionList{Actions: make([]apiv1.Action, 0, len(acts))}
	for _, a := range acts {
		out.Actions = append(out.Actions, actionView(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) {
	s.writeAction(w, http.StatusOK, r.PathValue("id"))
}

// ttlParam turns an optional "ttl" (a positive Go duration) into an
// expiry from now; empty means no expiry.
func (s *Server) ttlParam(v string) (*timestamppb.Timestamp, []string) {
	if v == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return nil, []string{fmt.Sprintf("ttl: %q is not a positive duration", v)}
	}
	return timestamppb.New(s.d.Now().Add(d)), nil
}

func limitParam(v string, def, max int) (int, []string) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return def, []string{fmt.Sprintf("limit: must be 1..%d", max)}
	}
	return n, nil
}
