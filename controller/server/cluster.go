package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/natsembed"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

func (c *Controller) joinToken() (string, error) {
	if c.cfg.JoinTokenFile == "" {
		return "", errors.New("joining a cluster needs an admin API token: set the join token file")
	}
	b, err := os.ReadFile(c.cfg.JoinTokenFile)
	if err != nil {
		return "", fmt.Errorf("read join token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// joinRequest describes this node as the cluster should record it.
func (c *Controller) joinRequest() apiv1.JoinRequest {
	return apiv1.JoinRequest{
		NodeID: c.cfg.NodeID, RaftAddress: c.store.Addr(), APIURL: c.apiURL,
		NATSClusterAddress: c.natsClusterAdvertise(), NATSClientURL: c.ownNATSClientURL(),
	}
}

// join asks the cluster at cfg.Join to add this node, retrying while the
// cluster is unreachable or between leaders; a refusal (bad token, bad
// request) ends it at once.
func (c *Controller) join(ctx context.Context) error {
	tok, err := c.joinToken()
	if err != nil {
		return err
	}
	cl, err := apiclient.New(c.cfg.Join, tok)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	// Before joining, a dev-TLS node trusts the CA file it was given
	// (the first node's DATA_DIR/ca.pem).
	if c.cfg.TLSCAFile != "" {
		pemCA, err := os.ReadFile(c.cfg.TLSCAFile)
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		if err := cl.TrustCA(pemCA); err != nil {
			return fmt.Errorf("join: %s: %w", c.cfg.TLSCAFile, err)
		}
	}
	req := c.joinRequest()
	for {
		var resp apiv1.JoinResponse
		err := cl.Do(ctx, http.MethodPost, "/api/v1/cluster/join", nil, req, &resp)
		if err == nil {
			c.log.Info("joined the cluster", "via", c.cfg.Join, "cluster", resp.ClusterID, "leader", resp.Leader)
			return nil
		}
		if st := apiclient.StatusOf(err); st >= 400 && st < 500 {
			return fmt.Errorf("join %s: %w", c.cfg.Join, err)
		}
		c.log.Warn("join: retrying", "via", c.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %w (last error: %w)", c.cfg.Join, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// desiredNode is this node's record as it should be in the FSM.
func (c *Controller) desiredNode() *palisadev1.Node {
	j := c.joinRequest()
	return &palisadev1.Node{Id: j.NodeID, RaftAddress: j.RaftAddress, ApiUrl: j.APIURL,
		NatsClusterAddress: j.NATSClusterAddress, NatsClientUrl: j.NATSClientURL}
}

// keepRegistered keeps this node's record in the FSM current (addresses
// change when a node restarts on new ports). The leader writes its own
// record; a follower re-joins through the API when it has a join token.
func (c *Controller) keepRegistered(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	warned := false
	for {
		want := c.desiredNode()
		var have *palisadev1.Node
		c.store.FSM().Read(func(s *fsm.State) { have, _ = s.Node(c.cfg.NodeID) })
		if have != nil {
			have.UpdatedAt = nil
		}
		if !proto.Equal(have, want) {
			var err error
			switch {
			case c.store.IsLeader():
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = c.store.Apply(cctx, &palisadev1.FSMCommand{Time: timestamppb.Now(), Actor: "node:" + c.cfg.NodeID,
					RequestId: secret.ID("req-"), Cmd: &palisadev1.FSMCommand_RegisterNode{RegisterNode: &palisadev1.RegisterNodeCmd{Node: want}}})
				cancel()
			case c.cfg.JoinTokenFile != "":
				err = c.reregister(ctx)
			default:
				if !warned {
					c.log.Warn("this node's addresses in the cluster state are stale and it has no join token to update them")
					warned = true
				}
			}
			if err != nil {
				c.log.Debug("register node: will retry", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) reregister(ctx context.Context) error {
	tok, err := c.joinToken()
	if err != nil {
		return err
	}
	cl, err := apiclient.New(c.apiURL, tok)
	if err != nil {
		return err
	}
	if c.clientTLS != nil {
		cl.UseTLS(c.clientTLS)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cl.Do(cctx, http.MethodPost, "/api/v1/cluster/join", nil, c.joinRequest(), nil)
}

// routeCredentials derives the NATS route user and password from the
// replicated controller secret: every node computes the same, nobody
// outside the cluster can.
func routeCredentials(ci *palisadev1.ClusterInfo) (string, string) {
	sum := sha256.Sum256(append([]byte("palisade-nats-route\x00"), ci.GetControllerNkeySeed()...))
	return "palisade-route", hex.EncodeToString(sum[:16])
}

// natsClusterAdvertise is this node's NATS route address.
func (c *Controller) natsClusterAdvertise() string {
	if c.cfg.NATSURL != "" || c.cfg.NATSClusterListen == "" {
		return ""
	}
	if c.nats != nil {
		if a := c.nats.ClusterAddr(); a != "" {
			return a
		}
	}
	return c.cfg.NATSClusterListen
}

// ownNATSClientURL is the URL agents use for this node's NATS server
// ("" in external mode or before the server has a port).
func (c *Controller) ownNATSClientURL() string {
	switch {
	case c.cfg.NATSURL != "":
		return ""
	case c.cfg.NATSAdvertise != "":
		return c.cfg.NATSAdvertise
	case c.nats != nil:
		return c.nats.ClientURL()
	}
	if h, p, err := net.SplitHostPort(c.cfg.NATSListen); err == nil && p != "0" && p != "-1" {
		return "nats://" + net.JoinHostPort(h, p)
	}
	return ""
}

// natsRoutes are the route addresses of every other node, from the FSM,
// plus the configured ones.
func (c *Controller) natsRoutes() []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] && a != c.natsClusterAdvertise() {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, r := range c.cfg.NATSRoutes {
		add(r)
	}
	c.store.FSM().Read(func(s *fsm.State) {
		for _, n := range s.Nodes() {
			if n.GetId() != c.cfg.NodeID {
				add(n.GetNatsClusterAddress())
			}
		}
	})
	return out
}

func (c *Controller) syncNATSRoutes() {
	if c.nats == nil || c.cfg.NATSClusterListen == "" {
		return
	}
	if err := c.nats.SetRoutes(c.natsRoutes()); err != nil {
		c.log.Error("update nats routes", "err", err)
	}
}

// startNATS starts the embedded server (standalone or clustered) or, in
// external mode, only connects; it returns the controller's connection.
func (c *Controller) startNATS(ci *palisadev1.ClusterInfo, pub string) (*nats.Conn, error) {
	seed := ci.GetControllerNkeySeed()
	opts := []nats.Option{nats.Name("palisade-controller " + c.cfg.NodeID), nats.MaxReconnects(-1),
		// The embedded server's user reloads (one per enrolment) can drop
		// this connection and refuse a reconnect that races them; two auth
		// errors in a row must not close the leader's connection for good.
		nats.IgnoreAuthErrorAbort(), nats.ReconnectWait(100 * time.Millisecond)}
	url := c.cfg.NATSURL
	if url != "" {
		if c.cfg.NATSCredsFile != "" {
			opts = append(opts, nats.UserCredentials(c.cfg.NATSCredsFile))
		}
	} else {
		user, pass := routeCredentials(ci)
		ns, err := natsembed.Start(natsembed.Config{
			TLS:    c.serverTLS,
			Listen: c.cfg.NATSListen, StoreDir: filepath.Join(c.cfg.DataDir, "nats"),
			ServerName: c.cfg.NodeID, ControllerNKey: pub, Agents: c.agentUsers(), Logger: c.log,
			ClusterListen: c.cfg.NATSClusterListen, ClusterName: ci.GetClusterId(),
			RouteUser: user, RoutePassword: pass, Routes: c.natsRoutesBeforeStart(),
		})
		if err != nil {
			return nil, err
		}
		c.nats = ns
		url = ns.ClientURL()
		opts = append(opts, nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			k, err := nkeys.FromSeed(seed)
			if err != nil {
				return nil, err
			}
			defer k.Wipe()
			return k.Sign(nonce)
		}))
	}
	if c.clientTLS != nil && c.cfg.NATSURL == "" {
		opts = append(opts, nats.Secure(c.clientTLS.Clone()))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	return nc, nil
}

// natsRoutesBeforeStart is natsRoutes for a server not started yet.
func (c *Controller) natsRoutesBeforeStart() []string {
	if c.cfg.NATSClusterListen == "" {
		return nil
	}
	return c.natsRoutes()
}

// leaderHooks runs the functions given to WhileLeader while this node
// leads.
type leaderHooks struct {
	mu      sync.Mutex
	fns     []func(context.Context)
	ctx     context.Context // non-nil while leading
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// WhileLeader registers fn to run while this node is the Raft leader:
// fn starts (in its own goroutine) when the node becomes leader — at once
// if it already leads — and its context is cancelled when leadership is
// lost or the node closes; it runs again on the next leadership. fn must
// return soon after its context ends. Leader-only work (the telemetry
// consumer, the responder) plugs in here; a new leader takes it over.
func (c *Controller) WhileLeader(fn func(ctx context.Context)) {
	h := &c.leader
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fns = append(h.fns, fn)
	if h.ctx != nil {
		h.start(fn)
	}
}

func (h *leaderHooks) start(fn func(context.Context)) {
	h.running.Add(1)
	ctx := h.ctx
	go func() {
		defer h.running.Done()
		fn(ctx)
	}()
}

// IsLeader reports whether this node leads the cluster now.
func (c *Controller) IsLeader() bool { return c.store.IsLeader() }

// leaderHooksPoll is how often runLeaderHooks checks leadership.
const leaderHooksPoll = 50 * time.Millisecond

// runLeaderHooks follows leadership (polling, so
// raft's single LeaderCh stays free) and starts or stops the hooks. A
// new leader first waits for its FSM to apply everything committed
// (Barrier), so hooks see the state its predecessor left.
func (c *Controller) runLeaderHooks(ctx context.Context) {
	h := &c.leader
	stop := func() {
		h.mu.Lock()
		if h.cancel != nil {
			h.cancel()
		}
		h.ctx, h.cancel = nil, nil
		h.mu.Unlock()
		h.running.Wait()
	}
	defer stop()
	t := time.NewTicker(leaderHooksPoll)
	defer t.Stop()
	for {
		h.mu.Lock()
		leading := h.ctx != nil
		h.mu.Unlock()
		switch now := c.store.IsLeader(); {
		case now && !leading:
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.store.Barrier(bctx)
			cancel()
			if err == nil {
				h.mu.Lock()
				h.ctx, h.cancel = context.WithCancel(ctx)
				for _, fn := range h.fns {
					h.start(fn)
				}
				h.mu.Unlock()
				c.log.Info("leadership acquired: leader hooks started", "hooks", len(h.fns))
			}
		case !now && leading:
			c.log.Info("leadership lost: stopping leader hooks")
			stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// NATSConn is the controller's own NATS connection (tests, and leader
// hooks that publish or consume).
func (c *Controller) NATSConn() *nats.Conn { return c.nc }

// NATSRoutes is the embedded server's number of route connections (0 in
// external mode).
func (c *Controller) NATSRoutes() int {
	if c.nats == nil {
		return 0
	}
	return c.nats.NumRoutes()
}

// NATSJetStreamReady reports whether the embedded server's JetStream can
// serve (clustered: it has a current meta leader). Always true in
// external mode.
func (c *Controller) NATSJetStreamReady() bool {
	if c.nats == nil {
		return true
	}
	return c.nats.JetStreamReady()
}
