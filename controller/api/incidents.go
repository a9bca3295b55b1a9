package api

import (
	"net/http"
	"slices"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

var severities = []string{"low", "medium", "high", "critical"}

// listIncidents serves GET /api/v1/incidents?host=&status=&limit=.
func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems []string
	host := q.Get("host")
	var status palisadev1.IncidentStatus
	if v := q.Get("status"); v != "" {
		st, ok := parseEnum(v, palisadev1.IncidentStatus_name, incidentStatusWord)
		if !ok {
			problems = append(problems, "status: want open, acknowledged or resolved")
		}
		status = st
	}
	limit, lp := limitParam(q.Get("limit"), 100, 10000)
	problems = append(problems, lp...)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems...)
		return
	}
	var incs []*palisadev1.Incident
	s.d.Store.FSM().Read(func(st *fsm.State) {
		incs = st.Incidents(func(i *palisadev1.Incident) bool {
			return (host == "" || i.GetHostId() == host) && (status == 0 || i.GetStatus() == status)
		}, limit)
	})
	out := apiv1.IncidentList{Incidents: make([]apiv1.Incident, 0, len(incs))}
	for _, i := range incs {
		out.Incidents = append(out.Incidents, incidentView(i))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) writeIncident(w http.ResponseWriter, status int, id string) {
	var (
		inc *palisadev1.Incident
		ok  bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { inc, ok = st.Incident(id) })
	if !ok {
		writeError(w, http.StatusNotFound, "no incident "+id)
		return
	}
	writeJSON(w, status, incidentView(inc))
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	s.writeIncident(w, http.StatusOK, r.PathValue("id"))
}

func (s *Server) createIncident(w http.ResponseWriter, r *http.Request) {
	var req apiv1.CreateIncidentRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	var problems []string
	if req.HostID == "" {
		problems = append(problems, "host_id: required")
	}
	problems = append(problems, checkText("rule", req.Rule, true)...)
	problems = append(problems, checkText("title", req.Title, false)...)
	if !slices.Contains(severities, req.Severity) {
		problems = append(problems, "severity: want low, medium, high or critical")
	}
	if len(req.AlertIDs) > 1000 {
		problems = append(problems, "alert_ids: at most 1000")
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid incident", problems...)
		return
	}
	inc := &palisadev1.Incident{Id: secret.ID("inc-"), HostId: req.HostID, Rule: req.Rule, Severity: req.Severity,
		Title: req.Title, AlertIds: req.AlertIDs}
	res, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_CreateIncident{
		CreateIncident: &palisadev1.CreateIncidentCmd{Incident: inc}}}, inc.GetId())
	if !ok {
		return
	}
	s.writeIncident(w, http.StatusCreated, res.ResultID)
}

func (s *Server) acknowledgeIncident(w http.ResponseWriter, r *http.Request) {
	s.updateIncident(w, r, palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED)
}

func (s *Server) resolveIncident(w http.ResponseWriter, r *http.Request) {
	s.updateIncident(w, r, palisadev1.IncidentStatus_INCIDENT_STATUS_RESOLVED)
}

func (s *Server) updateIncident(w http.ResponseWriter, r *http.Request, to palisadev1.IncidentStatus) {
	var req apiv1.IncidentUpdateRequest
	if !decodeBody(w, r, &req, true) {
		return
	}
	if problems := checkText("note", req.Note, false); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid request", problems...)
		return
	}
	id := r.PathValue("id")
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_UpdateIncident{
		UpdateIncident: &palisadev1.UpdateIncidentCmd{IncidentId: id, Status: to, Note: req.Note}}}, id); !ok {
		return
	}
	s.writeIncident(w, http.StatusOK, id)
}
