package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/internal/apiv1"
)

// forwarder sends writes (and linearizable reads) that reach a follower
// on to the leader, so a client never needs to know who leads. The
// leader's API URL comes from the node records in the FSM. A request is
// forwarded at most once: the leader answers it itself, with 503 if it
// has lost leadership meanwhile, and the client retries.
type forwarder struct {
	s     *Server
	proxy *httputil.ReverseProxy
}

type leaderURLKey struct{}

func newForwarder(s *Server) *forwarder {
	f := &forwarder{s: s}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := pr.In.Context().Value(leaderURLKey{}).(*url.URL)
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Set(apiv1.HeaderForwardedBy, s.d.Store.NodeID())
			pr.Out.Header.Set("X-Request-Id", requestID(pr.In.Context()))
		},
		Transport: &http.Transport{
			TLSClientConfig:       s.d.ClientTLS,
			Proxy:                 nil,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       time.Minute,
			ResponseHeaderTimeout: 30 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusServiceUnavailable, "forward to the leader failed: "+err.Error()+"; retry")
		},
	}
	return f
}

// shouldForward: API writes and ?consistent=true reads on a follower,
// unless already forwarded once.
func (f *forwarder) shouldForward(r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, "/api/v1/") || r.Header.Get(apiv1.HeaderForwardedBy) != "" {
		return false
	}
	if !isMutation(r.Method) && !wantsConsistent(r) {
		return false
	}
	return !f.s.d.Store.IsLeader()
}

func wantsConsistent(r *http.Request) bool {
	v := r.URL.Query().Get("consistent")
	return v == "true" || v == "1"
}

func (f *forwarder) forward(w http.ResponseWriter, r *http.Request) {
	u, err := f.s.leaderURL()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; retry")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), leaderURLKey{}, u)))
}

// leaderURL is the current leader's API base URL.
func (s *Server) leaderURL() (*url.URL, error) {
	_, id := s.d.Store.Leader()
	if id == "" {
		return nil, errors.New("no leader is known right now")
	}
	var raw string
	s.d.Store.FSM().Read(func(st *fsm.State) {
		if n, ok := st.Node(id); ok {
			raw = n.GetApiUrl()
		}
	})
	if raw == "" {
		return nil, fmt.Errorf("the leader %s has not registered its API address yet", id)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("leader %s api url %q: %w", id, raw, err)
	}
	return u, nil
}

// consistentRead makes a ?consistent=true read on the leader
// linearizable: it confirms leadership with a quorum and waits for the FSM
// to apply everything committed before. (On a follower such reads were
// forwarded.) Other reads are served from the local FSM, possibly stale.
func (s *Server) consistentRead(r *http.Request) error {
	if isMutation(r.Method) || !wantsConsistent(r) || !strings.HasPrefix(r.URL.Path, "/api/v1/") {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	return s.d.Store.VerifyLeader(ctx)
}

func withValue(r *http.Request, k, v any) context.Context {
	return context.WithValue(r.Context(), k, v)
}
