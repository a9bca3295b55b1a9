package api

import (
	"net/http"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// hostView joins a host's replicated record with its in-memory liveness.
func (s *Server) hostView(h *palisadev1.Host) apiv1.Host {
	st := s.d.Liveness.Status(h.GetId())
	v := apiv1.Host{
		ID:               h.GetId(),
		Hostname:         h.GetHostname(),
		OS:               h.GetOs(),
		Arch:             h.GetArch(),
		Kernel:           h.GetKernel(),
		AgentVersion:     h.GetAgentVersion(),
		Labels:           h.GetLabels(),
		Online:           st.Online,
		Quarantined:      h.GetQuarantined(),
		QuarantineReason: h.GetQuarantineReason(),
		EnrolledAt:       timeOrNil(h.GetEnrolledAt()),
	}
	if !st.LastSeen.IsZero() {
		t := st.LastSeen.UTC()
		v.LastSeen = &t
	}
	if hb := st.Heartbeat; hb != nil {
		if hb.GetKernel() != "" {
			v.Kernel = hb.GetKernel()
		}
		if hb.GetAgentVersion() != "" {
			v.AgentVersion = hb.GetAgentVersion()
		}
		if hb.GetHostname() != "" {
			v.Hostname = hb.GetHostname()
		}
		v.PolicyVersion = hb.GetPolicyVersion()
		v.PolicyRevision = hb.GetPolicyRevision()
		v.RingbufDrops = hb.GetRingbufDrops()
		v.EventsLost = hb.GetEventsLost()
		for _, f := range hb.GetFeatures() {
			v.Features = append(v.Features, apiv1.Feature{Name: f.GetName(), Available: f.GetAvailable(), Error: f.GetError()})
		}
	}
	return v
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	keep, problems := hostFilter(r)
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems...)
		return
	}
	var hosts []*palisadev1.Host
	s.d.Store.FSM().Read(func(st *fsm.State) { hosts = st.Hosts() })
	out := apiv1.HostList{Hosts: make([]apiv1.Host, 0, len(hosts))}
	for _, h := range hosts {
		if v := s.hostView(h); keep(v) {
			out.Hosts = append(out.Hosts, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	s.writeHost(w, http.StatusOK, r.PathValue("id"))
}
