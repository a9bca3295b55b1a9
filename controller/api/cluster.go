package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/apiv1"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// clusterStatus serves GET /api/v1/cluster: the Raft configuration as
// this node sees it, each member's own view of its state (asked over its
// /healthz, 1s timeout; "unreachable" when it does not answer).
func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	servers, err := s.d.Store.Servers()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	_, leader := s.d.Store.Leader()
	nodes := map[string]*palisadev1.Node{}
	s.d.Store.FSM().Read(func(st *fsm.State) {
		for _, n := range st.Nodes() {
			nodes[n.GetId()] = n
		}
	})
	out := apiv1.Cluster{Leader: leader, Nodes: make([]apiv1.ClusterNode, len(servers))}
	var wg sync.WaitGroup
	for i, srv := range servers {
		cn := apiv1.ClusterNode{ID: srv.ID, Address: srv.Address, Voter: srv.Voter, State: "unreachable"}
		if n := nodes[srv.ID]; n != nil {
			cn.APIURL, cn.NATSClusterAddress = n.GetApiUrl(), n.GetNatsClusterAddress()
		}
		out.Nodes[i] = cn
		if srv.ID == s.d.Store.NodeID() {
			out.Nodes[i].State, out.Nodes[i].AppliedIndex = s.d.Store.State(), s.d.Store.AppliedIndex()
			continue
		}
		if cn.APIURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h, err := s.probeHealth(r.Context(), cn.APIURL); err == nil && h.Node == srv.ID {
				out.Nodes[i].State, out.Nodes[i].AppliedIndex = h.State, h.AppliedIndex
			}
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) probeHealth(ctx context.Context, base string) (*apiv1.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.probe.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h apiv1.Health
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&h); err != nil {
		return nil, fmt.Errorf("decode health: %w", err)
	}
	return &h, nil
}

func validateJoin(req *apiv1.JoinRequest) []string {
	var p []string
	if !nodeIDPattern.MatchString(req.NodeID) {
		p = append(p, "node_id: 1-63 letters, digits, '.', '_' or '-'")
	}
	if _, _, err := net.SplitHostPort(req.RaftAddress); err != nil {
		p = append(p, fmt.Sprintf("raft_address: %q is not host:port", req.RaftAddress))
	}
	if u, err := url.Parse(req.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p = append(p, fmt.Sprintf("api_url: %q is not an http(s) URL", req.APIURL))
	}
	if req.NATSClusterAddress != "" {
		if _, _, err := net.SplitHostPort(req.NATSClusterAddress); err != nil {
			p = append(p, fmt.Sprintf("nats_cluster_address: %q is not host:port", req.NATSClusterAddress))
		}
	}
	return p
}

// clusterJoin serves POST /api/v1/cluster/join (admin; forwarded to the
// leader): it adds the node as a Raft voter and records its addresses.
// Joining again with the same id updates the addresses.
func (s *Server) clusterJoin(w http.ResponseWriter, r *http.Request) {
	var req apiv1.JoinRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	if problems := validateJoin(&req); len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid join request", problems...)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.d.Store.AddVoter(ctx, req.NodeID, req.RaftAddress); err != nil {
		s.writeApplyError(w, err)
		return
	}
	n := &palisadev1.Node{Id: req.NodeID, RaftAddress: req.RaftAddress, ApiUrl: req.APIURL,
		NatsClusterAddress: req.NATSClusterAddress, NatsClientUrl: req.NATSClientURL}
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RegisterNode{
		RegisterNode: &palisadev1.RegisterNodeCmd{Node: n}}}, req.NodeID); !ok {
		return
	}
	s.d.Logger.Info("node joined", "node", req.NodeID, "raft", req.RaftAddress, "api", req.APIURL)
	_, leader := s.d.Store.Leader()
	writeJSON(w, http.StatusOK, apiv1.JoinResponse{ClusterID: s.cluster().GetClusterId(), Leader: leader})
}

// clusterRemove serves DELETE /api/v1/cluster/nodes/{id}. Removing the
// leader itself first hands leadership to another voter and answers 503,
// so the client's retry reaches the new leader, which removes the old.
func (s *Server) clusterRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	servers, err := s.d.Store.Servers()
	if err != nil {
		s.writeApplyError(w, err)
		return
	}
	member := false
	for _, srv := range servers {
		member = member || srv.ID == id
	}
	if id == s.d.Store.NodeID() {
		if len(servers) < 2 {
			writeError(w, http.StatusConflict, "cannot remove the only node")
			return
		}
		if err := s.d.Store.TransferLeadership(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error()+"; retry")
			return
		}
		writeError(w, http.StatusServiceUnavailable, "this node led the cluster and handed leadership over; retry to remove it")
		return
	}
	if !member {
		var known bool
		s.d.Store.FSM().Read(func(st *fsm.State) { _, known = st.Node(id) })
		if !known {
			writeError(w, http.StatusNotFound, "no node "+id)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if member {
		if err := s.d.Store.RemoveServer(ctx, id); err != nil {
			s.writeApplyError(w, err)
			return
		}
	}
	if _, ok := s.commit(w, r, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RemoveNode{
		RemoveNode: &palisadev1.RemoveNodeCmd{NodeId: id}}}, id); !ok {
		return
	}
	s.d.Logger.Info("node removed", "node", id)
	w.WriteHeader(http.StatusNoContent)
}

var _ = store.ErrNotLeader
