package api

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// protoJSON encodes messages as protobuf JSON (snake_case field names).
func protoJSON[T proto.Message](msgs []T) ([]jsonRaw, error) {
	mo := protojson.MarshalOptions{UseProtoNames: true}
	out := make([]jsonRaw, 0, len(msgs))
	for _, m := range msgs {
		b, err := mo.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// listIncidentAlerts serves GET /api/v1/incidents/{id}/alerts: the alerts
// of an incident that this node still holds (the most recent 100,000).
func (s *Server) listIncidentAlerts(w http.ResponseWriter, r *http.Request) {
	var (
		inc *palisadev1.Incident
		ok  bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { inc, ok = st.Incident(r.PathValue("id")) })
	if !ok {
		writeError(w, http.StatusNotFound, "no incident "+r.PathValue("id"))
		return
	}
	out, err := protoJSON(s.d.Alerts.Get(inc.GetAlertIds()))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode alerts: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incident": inc.GetId(), "alerts": out})
}

// leakBlastRadius serves GET /api/v1/leaked-credentials/{id}/blast-radius:
// every host, file and process where agents found the key.
func (s *Server) leakBlastRadius(w http.ResponseWriter, r *http.Request) {
	var (
		lc *palisadev1.LeakedCredential
		ok bool
	)
	s.d.Store.FSM().Read(func(st *fsm.State) { lc, ok = st.LeakedCredential(r.PathValue("id")) })
	if !ok {
		writeError(w, http.StatusNotFound, "no leaked credential "+r.PathValue("id"))
		return
	}
	sum := lc.GetKeyIdSha256()
	alerts := s.d.Alerts.Find(func(a *palisadev1.Alert) bool {
		return slices.Contains(strings.Split(a.GetLabels()["key_sha256"], ","), sum)
	}, 0)
	br := apiv1.BlastRadius{ID: lc.GetId(), Key: lc.GetKeyIdMasked(), Hosts: []string{}, Files: []apiv1.BlastFile{}, Processes: []apiv1.BlastProcess{}}
	hosts := map[string]bool{}
	for _, a := range alerts {
		hosts[a.GetHostId()] = true
		l := a.GetLabels()
		if l["where"] == "file" {
			br.Files = append(br.Files, apiv1.BlastFile{Host: a.GetHostId(), Path: l["path"], Line: l["line"]})
			continue
		}
		p := a.GetEvent().GetProcess()
		br.Processes = append(br.Processes, apiv1.BlastProcess{
			Host: a.GetHostId(), PID: p.GetPid(), Exe: p.GetExePath(), Where: l["leaked_key"],
			Killed: a.GetResponseTaken(), Alert: a.GetId(),
		})
	}
	for h := range hosts {
		br.Hosts = append(br.Hosts, h)
	}
	sort.Strings(br.Hosts)
	writeJSON(w, http.StatusOK, br)
}

// secretScanning serves POST /api/v1/leaked-credentials/secret-scanning:
// an alert in the format of GitHub's secret scanning partner program (a
// JSON list of {"token","type","url","source"}). Each token becomes a
// leaked credential (one audit entry each); the whole list is validated
// first and nothing is recorded if any entry is bad.
func (s *Server) secretScanning(w http.ResponseWriter, r *http.Request) {
	var reqs []apiv1.SecretScanningMatch
	if !decodeBody(w, r, &reqs, false) {
		return
	}
	if len(reqs) == 0 || len(reqs) > 100 {
		writeError(w, http.StatusBadRequest, "invalid secret scanning alert", "want 1 to 100 matches")
		return
	}
	var (
		records  []*palisadev1.LeakedCredential
		problems []string
	)
	for i, m := range reqs {
		lc, ps := leakRecord(apiv1.AddLeakedCredentialRequest{KeyID: m.Token, Source: firstNonEmpty(m.Source, "secret-scanning"), Comment: trimTo(m.URL, 200)})
		for _, p := range ps {
			problems = append(problems, "["+strconv.Itoa(i)+"]."+p)
		}
		records = append(records, lc)
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid secret scanning alert", problems...)
		return
	}
	out := apiv1.LeakedCredentialList{Credentials: []apiv1.LeakedCredential{}}
	for _, lc := range records {
		res, err := s.proposeResult(r, caller(r.Context()).actor(), &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_AddLeakedCredential{
			AddLeakedCredential: &palisadev1.AddLeakedCredentialCmd{Credential: lc}}}, lc.GetId())
		if err == nil {
			err = res.Err
		}
		if err != nil {
			s.writeApplyError(w, err)
			return
		}
		var got *palisadev1.LeakedCredential
		s.d.Store.FSM().Read(func(st *fsm.State) { got, _ = st.LeakedCredential(res.ResultID) })
		out.Credentials = append(out.Credentials, leakView(got))
	}
	writeJSON(w, http.StatusCreated, out)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
