package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// listAudit serves GET /api/v1/audit?after=INDEX&limit=N&actor=&action=&target=
// (action "host." matches every action starting with it).
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems []string
	after, limit := uint64(0), 100
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			problems = append(problems, "after: not an index")
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			problems = append(problems, "limit: must be 1..1000")
		}
		limit = n
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems...)
		return
	}
	actor, action, target := q.Get("actor"), q.Get("action"), q.Get("target")
	keep := func(e *palisadev1.AuditEntry) bool {
		if actor != "" && e.GetActor() != actor || target != "" && e.GetTarget() != target {
			return false
		}
		if action != "" {
			if p, ok := strings.CutSuffix(action, "."); ok {
				return strings.HasPrefix(e.GetAction(), p+".")
			}
			return e.GetAction() == action
		}
		return true
	}
	var entries []*palisadev1.AuditEntry
	s.d.Store.FSM().Read(func(st *fsm.State) { entries = st.AuditFilter(after, limit, keep) })
	out := apiv1.AuditList{Entries: make([]apiv1.AuditEntry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, apiv1.AuditEntry{
			Index: e.GetIndex(), Time: timeOrNil(e.GetTime()), Actor: e.GetActor(), Action: e.GetAction(),
			Target: e.GetTarget(), RequestID: e.GetRequestId(), Detail: e.GetDetail(),
		})
	}
	writeJSON(w, http.StatusOK, out)
}
