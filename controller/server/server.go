// Package server wires one controller node together: the Raft store, the
// embedded NATS server, heartbeat liveness, and the HTTP API. main only
// parses flags and calls Start.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
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

	"github.com/palisade-sec/palisade/controller/api"
	"github.com/palisade-sec/palisade/controller/eventstore"
	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/liveness"
	"github.com/palisade-sec/palisade/controller/natsembed"
	"github.com/palisade-sec/palisade/controller/store"
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
	http     *http.Server
	listener net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
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
		events: eventstore.New(0)}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Controller) start(ctx context.Context) error {
	st, err := store.Open(store.Config{
		NodeID: c.cfg.NodeID, DataDir: c.cfg.DataDir, RaftAddr: c.cfg.RaftAddr,
		Bootstrap: c.cfg.Bootstrap, Logger: c.log,
		HeartbeatTimeout: c.cfg.RaftHeartbeatTimeout, ElectionTimeout: c.cfg.RaftElectionTimeout,
		LeaderLeaseTimeout: min(c.cfg.RaftHeartbeatTimeout, c.cfg.RaftElectionTimeout),
	})
	if err != nil {
		return err
	}
	c.store = st

	sctx, scancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer scancel()
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

	kp, err := nkeys.FromSeed(ci.GetControllerNkeySeed())
	if err != nil {
		return fmt.Errorf("controller nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("controller nkey: %w", err)
	}
	ns, err := natsembed.Start(natsembed.Config{
		Listen: c.cfg.NATSListen, StoreDir: filepath.Join(c.cfg.DataDir, "nats"),
		ServerName: c.cfg.NodeID, ControllerNKey: pub, Logger: c.log,
	})
	if err != nil {
		return err
	}
	c.nats = ns
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
			}
		}
	})

	seed := ci.GetControllerNkeySeed()
	nc, err := nats.Connect(ns.ClientURL(),
		nats.Name("palisade-controller "+c.cfg.NodeID),
		nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			k, err := nkeys.FromSeed(seed)
			if err != nil {
				return nil, err
			}
			defer k.Wipe()
			return k.Sign(nonce)
		}),
		nats.MaxReconnects(-1),
	)
	if err != nil {
		return fmt.Errorf("connect to embedded nats: %w", err)
	}
	c.nc = nc
	c.goRun(func() {
		if err := c.tracker.Subscribe(ctx, nc, c.knownHost, c.log); err != nil {
			c.log.Error("heartbeat subscription ended", "err", err)
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
		Store: st, Liveness: c.tracker, Logger: c.log, Gatherer: reg, Events: c.events,
		NATSURLs: c.natsURLs,
	})
	ln, err := net.Listen("tcp", c.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen api %s: %w", c.cfg.APIAddr, err)
	}
	c.listener = ln
	c.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	c.goRun(func() {
		if err := c.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("api server stopped", "err", err)
		}
	})
	c.log.Info("controller started", "node", c.cfg.NodeID, "api", c.APIURL(), "nats", ns.ClientURL(), "raft", st.Addr())
	return nil
}

func (c *Controller) goRun(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

// knownHost reports whether id is an enrolled host.
func (c *Controller) knownHost(id string) bool {
	var ok bool
	c.store.FSM().Read(func(s *fsm.State) { _, ok = s.Host(id) })
	return ok
}

// natsURLs is what agents are told to connect to.
func (c *Controller) natsURLs() []string {
	if c.cfg.NATSAdvertise != "" {
		return []string{c.cfg.NATSAdvertise}
	}
	return []string{c.nats.ClientURL()}
}

// syncNATSUsers makes the embedded server's users match the enrolled hosts.
func (c *Controller) syncNATSUsers() {
	agents := map[string]string{}
	c.store.FSM().Read(func(s *fsm.State) {
		for _, h := range s.Hosts() {
			agents[h.GetNkey()] = h.GetId()
		}
	})
	if err := c.nats.SetAgents(agents); err != nil {
		c.log.Error("update nats users", "err", err)
	}
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
func (c *Controller) APIURL() string { return "http://" + c.listener.Addr().String() }

// NATSURL is the embedded NATS server's client URL.
func (c *Controller) NATSURL() string { return c.nats.ClientURL() }

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
		if c.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := c.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown api: %w", err))
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
