// Package server wires one controller node together: the Raft store, the
// embedded NATS server, heartbeat liveness, and the HTTP API. main only
// parses flags and calls Start.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/alertstore"
	"github.com/palisade-sec/palisade/controller/api"
	"github.com/palisade-sec/palisade/controller/eventstore"
	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/ingest"
	"github.com/palisade-sec/palisade/controller/liveness"
	"github.com/palisade-sec/palisade/controller/natsauth"
	"github.com/palisade-sec/palisade/controller/natsembed"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/devca"
	"github.com/palisade-sec/palisade/internal/fileutil"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// AdminTokenFile is the file, in the data dir, that receives the first
// admin API token at bootstrap.
const AdminTokenFile = "admin.token"

// Config configures a controller node.
type Config struct {
	NodeID     string
	DataDir    string
	APIAddr    string // host:port
	RaftAddr   string // host:port
	NATSListen string // host:port of the embedded NATS server
	// NATSAdvertise overrides the NATS URL given to agents.
	NATSAdvertise string
	Bootstrap     bool
	Logger        *slog.Logger
	// StartTimeout bounds waiting for a leader and the cluster identity.
	StartTimeout time.Duration
	// Raft tuning (zero: defaults).
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	// RaftSnapshotThreshold: log entries between automatic snapshots
	// (0: 8192); RaftTrailingLogs: entries a snapshot leaves in the log
	// (0: 10240); a follower further behind is sent the snapshot.
	RaftSnapshotThreshold uint64
	RaftTrailingLogs      uint64
	// RaftSnapshotInterval is how often the threshold is checked (0: 2m).
	RaftSnapshotInterval time.Duration

	// Join is the API URL of any node of an existing cluster: a node with
	// no Raft state asks it (it forwards to the leader) to add it as a
	// voter. JoinTokenFile holds an admin API token that authenticates
	// the join (and later re-registrations of this node's addresses).
	Join          string
	JoinTokenFile string
	// APIAdvertise is the API URL other nodes use to reach this one
	// (default http://<the API listener's address>).
	APIAdvertise string
	// NATSClusterListen (host:port) makes the embedded NATS server join
	// the other nodes' into one NATS cluster; routes come from the nodes
	// recorded in the cluster state, plus NATSRoutes.
	NATSClusterListen string
	NATSRoutes        []string
	// NATSURL points this node at an existing NATS cluster instead of
	// embedding a server (comma-separated URLs); NATSCredsFile holds the
	// credentials (a .creds file) the controller uses there. In this mode
	// the operator's NATS manages agent identities unless
	// NATSAccountSigningKeyFile is set.
	NATSURL       string
	NATSCredsFile string
	// NATSAccountSigningKeyFile (external mode) holds the seed of a
	// signing key of the account the controller's creds belong to: at
	// enrolment the controller issues each agent a user JWT for its nkey
	// with exactly the embedded mode's agent permissions (natsauth).
	NATSAccountSigningKeyFile string
	// TLS is "off", "dev" (a CA generated at bootstrap and kept in the
	// cluster state; each node issues its certificate; DATA_DIR/ca.pem is
	// what clients trust) or "files" (TLSCertFile, TLSKeyFile; TLSCAFile
	// is what this node trusts as a client of the others). It covers the
	// API and the embedded NATS server's client port.
	TLS         string
	TLSCertFile string
	TLSKeyFile  string
	TLSCAFile   string
	// StreamReplicas is the JetStream replication of Palisade's streams
	// (1 for a single node; 3 for a 3-node cluster).
	StreamReplicas int
	// OnIngestEvents, when set, sees every event the leader ingests
	// (exactly once per host sequence number). For tests and benchmarks.
	OnIngestEvents func(hostID string, evs []*palisadev1.Event)
}

// Controller is a running node.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	nats     *natsembed.Server
	nc       *nats.Conn
	tracker  *liveness.Tracker
	events   *eventstore.Store
	alerts   *alertstore.Store
	http     *http.Server
	listener net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	mu       sync.Mutex
	ingester *ingest.Ingester

	serverTLS *tls.Config // nil: plain
	clientTLS *tls.Config // trust for calls to other nodes and own NATS

	leader leaderHooks
	apiURL string // this node's advertised API URL
}

// Start brings a node up and returns once it serves the API. The node runs
// until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Controller{cfg: cfg, log: cfg.Logger, cancel: cancel, tracker: liveness.NewTracker(nil),
		events: eventstore.New(0), alerts: alertstore.New(0)}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Controller) start(ctx context.Context) error {
	agentJWT, err := c.agentJWTIssuer()
	if err != nil {
		return err
	}
	// The API listener comes first: a joining node tells the cluster its
	// API URL before it can serve.
	ln, err := net.Listen("tcp", c.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen api %s: %w", c.cfg.APIAddr, err)
	}
	c.listener = ln
	c.apiURL = c.cfg.APIAdvertise
	if c.apiURL == "" {
		c.apiURL = c.scheme() + "://" + ln.Addr().String()
	}
	st, err := store.Open(store.Config{
		NodeID: c.cfg.NodeID, DataDir: c.cfg.DataDir, RaftAddr: c.cfg.RaftAddr,
		Bootstrap: c.cfg.Bootstrap, Logger: c.log,
		HeartbeatTimeout: c.cfg.RaftHeartbeatTimeout, ElectionTimeout: c.cfg.RaftElectionTimeout,
		LeaderLeaseTimeout: min(c.cfg.RaftHeartbeatTimeout, c.cfg.RaftElectionTimeout),
		SnapshotThreshold:  c.cfg.RaftSnapshotThreshold, TrailingLogs: c.cfg.RaftTrailingLogs,
		SnapshotInterval: c.cfg.RaftSnapshotInterval,
	})
	if err != nil {
		return err
	}
	c.store = st

	sctx, scancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer scancel()
	if c.cfg.Join != "" && !st.HadState() {
		if err := c.join(sctx); err != nil {
			return err
		}
	}
	if err := st.WaitForLeader(sctx); err != nil {
		return err
	}
	if st.IsLeader() {
		if err := c.initCluster(sctx); err != nil {
			return err
		}
	}
	ci, err := c.waitCluster(sctx)
	if err != nil {
		return err
	}
	if err := c.setupTLS(ci); err != nil {
		return err
	}

	kp, err := nkeys.FromSeed(ci.GetControllerNkeySeed())
	if err != nil {
		return fmt.Errorf("controller nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("controller nkey: %w", err)
	}
	nc, err := c.startNATS(ci, pub)
	if err != nil {
		return err
	}
	c.nc = nc
	c.syncNATSUsers()
	changed := make(chan struct{}, 1)
	st.FSM().OnChange(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	c.goRun(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				c.syncNATSUsers()
				c.syncNATSRoutes()
			}
		}
	})

	c.goRun(func() { c.runLeaderHooks(ctx) })
	c.goRun(func() { c.keepRegistered(ctx) })
	c.goRun(func() {
		if err := c.tracker.Subscribe(ctx, nc, c.knownHost, c.log); err != nil {
			c.log.Error("heartbeat subscription ended", "err", err)
		}
	})
	c.WhileLeader(c.leaderWork)
	c.goRun(func() {
		if err := c.alerts.Subscribe(ctx, nc, c.knownHost, c.log); err != nil {
			c.log.Error("alert subscription ended", "err", err)
		}
	})
	c.goRun(func() {
		if err := c.events.Subscribe(ctx, nc, c.knownHost, c.log); err != nil {
			c.log.Error("event subscription ended", "err", err)
		}
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(c.tracker.Collectors()...)
	reg.MustRegister(c.events.Collectors()...)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "palisade_controller_is_leader", Help: "1 when this node is the Raft leader.",
	}, func() float64 {
		if st.IsLeader() {
			return 1
		}
		return 0
	}))

	handler := api.New(api.Deps{
		Store: st, Liveness: c.tracker, Logger: c.log, Gatherer: reg, Events: c.events, Alerts: c.alerts,
		NATSURLs: c.natsURLs, AgentJWT: agentJWT, ClientTLS: c.clientTLS,
	})
	c.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(c.log.With("component", "http").Handler(), slog.LevelWarn)}
	if c.serverTLS != nil {
		ln = tls.NewListener(ln, c.serverTLS)
	}
	c.goRun(func() {
		if err := c.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("api server stopped", "err", err)
		}
	})
	c.log.Info("controller started", "node", c.cfg.NodeID, "api", c.APIURL(), "nats", c.natsURLs(), "raft", st.Addr())
	return nil
}

func (c *Controller) goRun(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

// agentJWTIssuer returns the function that issues agents' NATS user JWTs
// (external mode with an account signing key), or nil.
func (c *Controller) agentJWTIssuer() (func(hostID, nkey string) (string, error), error) {
	if c.cfg.NATSAccountSigningKeyFile == "" {
		if c.cfg.NATSURL != "" {
			c.log.Warn("external NATS without an account signing key: agents get no NATS identity from the controller")
		}
		return nil, nil
	}
	if c.cfg.NATSURL == "" {
		return nil, errors.New("an account signing key is for external NATS only: set the NATS URL too")
	}
	iss, err := natsauth.LoadIssuer(c.cfg.NATSAccountSigningKeyFile, c.cfg.NATSCredsFile)
	if err != nil {
		return nil, err
	}
	c.log.Info("agents get NATS user JWTs", "account", iss.Account())
	return func(hostID, nkey string) (string, error) { return iss.AgentJWT(hostID, nkey, time.Now()) }, nil
}

// knownHost reports whether id is an enrolled host.
func (c *Controller) knownHost(id string) bool {
	var ok bool
	c.store.FSM().Read(func(s *fsm.State) { _, ok = s.Host(id) })
	return ok
}

// natsURLs is what agents are told to connect to: this node's NATS URL
// first, then the other nodes' (embedded cluster), or the external
// cluster's URLs.
func (c *Controller) natsURLs() []string {
	if c.cfg.NATSURL != "" {
		return splitList(c.cfg.NATSURL)
	}
	own := c.ownNATSClientURL()
	out := []string{own}
	c.store.FSM().Read(func(s *fsm.State) {
		for _, n := range s.Nodes() {
			if u := n.GetNatsClientUrl(); u != "" && u != own && n.GetId() != c.cfg.NodeID {
				out = append(out, u)
			}
		}
	})
	return out
}

// syncNATSUsers makes the embedded server's users match the enrolled hosts.
func (c *Controller) syncNATSUsers() {
	if c.nats == nil {
		return // external NATS: the operator manages identities
	}
	if err := c.nats.SetAgents(c.agentUsers()); err != nil {
		c.log.Error("update nats users", "err", err)
	}
}

// agentUsers maps every enrolled host's nkey to its host id.
func (c *Controller) agentUsers() map[string]string {
	agents := map[string]string{}
	c.store.FSM().Read(func(s *fsm.State) {
		for _, h := range s.Hosts() {
			agents[h.GetNkey()] = h.GetId()
		}
	})
	return agents
}

// initCluster runs on the bootstrap leader: it gives a new cluster its
// identity and its first admin token. Both steps are skipped when already
// done, so a restart changes nothing.
func (c *Controller) initCluster(ctx context.Context) error {
	if err := c.store.Barrier(ctx); err != nil {
		return err
	}
	var (
		ci     *palisadev1.ClusterInfo
		tokens int
	)
	c.store.FSM().Read(func(s *fsm.State) { ci, tokens = s.Cluster(), len(s.APITokens()) })
	now := timestamppb.Now()
	if ci == nil {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("generate signing key: %w", err)
		}
		kp, err := nkeys.CreateUser()
		if err != nil {
			return fmt.Errorf("generate controller nkey: %w", err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return fmt.Errorf("controller nkey seed: %w", err)
		}
		info := &palisadev1.ClusterInfo{
			ClusterId: secret.ID("c-"), SigningSeed: priv.Seed(), SigningPublicKey: pub,
			CreatedAt: now, ControllerNkeySeed: seed,
		}
		if info.CaCertPem, info.CaKeyPem, err = devca.New(info.GetClusterId()); err != nil {
			return err
		}
		if _, err := c.store.Apply(ctx, &palisadev1.FSMCommand{Time: now, Actor: "system:bootstrap", RequestId: secret.ID("req-"),
			Cmd: &palisadev1.FSMCommand_InitCluster{InitCluster: &palisadev1.InitClusterCmd{Info: info}}}); err != nil {
			return fmt.Errorf("initialise cluster: %w", err)
		}
	}
	if tokens > 0 {
		return nil
	}
	tok := secret.New(secret.APITokenPrefix)
	at := &palisadev1.APIToken{Id: secret.ID("tok-"), Name: "bootstrap-admin", Role: palisadev1.Role_ROLE_ADMIN,
		Sha256: secret.Hash(tok), CreatedAt: now, CreatedBy: "system:bootstrap"}
	// The file is written first: if we crash before the token is
	// committed, a restart writes a new one; never a committed token
	// whose secret nobody has.
	path := filepath.Join(c.cfg.DataDir, AdminTokenFile)
	if err := fileutil.WriteAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if _, err := c.store.Apply(ctx, &palisadev1.FSMCommand{Time: now, Actor: "system:bootstrap", RequestId: secret.ID("req-"),
		Cmd: &palisadev1.FSMCommand_CreateApiToken{CreateApiToken: &palisadev1.CreateAPITokenCmd{Token: at}}}); err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	c.log.Info("bootstrap admin token written", "path", path)
	return nil
}

func (c *Controller) waitCluster(ctx context.Context) (*palisadev1.ClusterInfo, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var ci *palisadev1.ClusterInfo
		c.store.FSM().Read(func(s *fsm.State) { ci = s.Cluster() })
		if ci != nil {
			return ci, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for cluster identity: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// APIURL is the API's base URL.
func (c *Controller) APIURL() string { return c.scheme() + "://" + c.listener.Addr().String() }

// CAPath is where a dev-TLS node wrote the CA certificate.
func (c *Controller) CAPath() string { return filepath.Join(c.cfg.DataDir, CAFile) }

// NATSURL is the NATS URL this node uses (its embedded server's).
func (c *Controller) NATSURL() string {
	if c.nats == nil {
		return splitList(c.cfg.NATSURL)[0]
	}
	return c.nats.ClientURL()
}

// Store exposes the Raft store (tests).
func (c *Controller) Store() *store.Store { return c.store }

// Tracker exposes host liveness (tests).
func (c *Controller) Tracker() *liveness.Tracker { return c.tracker }

// AdminTokenPath is where bootstrap wrote the admin token.
func (c *Controller) AdminTokenPath() string { return filepath.Join(c.cfg.DataDir, AdminTokenFile) }

// Close stops the node: API first, then NATS, then Raft; it waits for
// every goroutine it started.
func (c *Controller) Close() error {
	var errs []error
	c.closed.Do(func() {
		c.cancel()
		if c.http == nil && c.listener != nil {
			_ = c.listener.Close() // start failed before serving
		}
		if c.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.http.Shutdown(ctx); err != nil {
				// Requests still waiting on Raft (a cluster that lost
				// quorum) are cut rather than waited for.
				c.log.Warn("api requests still running at shutdown: closing them", "err", err)
				_ = c.http.Close()
			}
			cancel()
		}
		if c.nc != nil {
			c.nc.Close()
		}
		c.wg.Wait()
		if c.nats != nil {
			c.nats.Shutdown()
		}
		if c.store != nil {
			if err := c.store.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}
