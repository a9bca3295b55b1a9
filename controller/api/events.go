package api

import (
	"net/http"
	"strconv"

	"github.com/palisade-sec/palisade/controller/eventstore"
	"github.com/palisade-sec/palisade/controller/fsm"
)

// listHostEvents serves GET /api/v1/hosts/{id}/events?kind=exec|exit|file|connect&limit=N:
// the host's most recent events, newest first, as protobuf JSON.
func (s *Server) listHostEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var known bool
	s.d.Store.FSM().Read(func(st *fsm.State) { _, known = st.Host(id) })
	if !known {
		writeError(w, http.StatusNotFound, "no host "+id)
		return
	}
	q := r.URL.Query()
	var problems []string
	kind, err := eventstore.ParseKind(q.Get("kind"))
	if err != nil {
		problems = append(problems, err.Error())
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > eventstore.DefaultPerHost {
			problems = append(problems, "limit: must be 1.."+strconv.Itoa(eventstore.DefaultPerHost))
		}
		limit = n
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems...)
		return
	}
	out, err := protoJSON(s.d.Events.List(id, kind, limit))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode events: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// jsonRaw embeds already-encoded JSON.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }
