// Package daemon wires one agent together: identity (enrolment), the NATS
// connection under the agent's own nkey, the kernel sensors and their
// policy, event forwarding, the heartbeat and the agent's /metrics. main
// only parses flags and calls Start; the service wrapper does the same.
//
// Modes: with a controller (or an identity in the state dir) the agent
// reports and is managed over NATS; with neither it runs standalone,
// enforcing --policy (or the last good policy kept in the state dir) with
// no network dependency at all.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palisade-sec/palisade/agent/commands"
	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/agent/honeytoken"
	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/agent/natsconn"
	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/agent/spool"
	"github.com/palisade-sec/palisade/agent/telemetry"
	"github.com/palisade-sec/palisade/internal/version"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Config configures an agent.
type Config struct {
	StateDir          string
	ControllerURL     string
	EnrollToken       string
	HeartbeatInterval time.Duration
	// CgroupPath is the enforcement scope (cgroup v2 directory). Empty:
	// no kernel sensors (the agent only reports).
	CgroupPath string
	// PinDir holds the pinned BPF objects (default: derived from the scope).
	PinDir string
	// PolicyFile is a local policy enforced without a controller.
	PolicyFile string
	// SpoolBytes bounds the on-disk telemetry spool (0: spool.DefaultMaxBytes).
	SpoolBytes int64
	// CAFile is the controller's CA certificate (its DATA_DIR/ca.pem) when
	// the controller serves TLS; needed at enrolment, kept afterwards.
	CAFile string
	// MetricsAddr serves the agent's /metrics (empty: off).
	MetricsAddr string
	Logger      *slog.Logger
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	id      *identity.Identity // nil when standalone
	nc      *nats.Conn         // nil when standalone
	sensor  *sensor.Sensor     // nil without --cgroup
	fwd     *telemetry.Forwarder
	acts    *actions
	exec    *commands.Executor
	spool   *spool.Spool // nil when standalone
	sender  *telemetry.Sender
	policy  *policyState
	rules   *rules.Engine
	planter *honeytoken.Planter
	// blocks are destinations denied by rule responses and block
	// commands, on top of the policy (guarded by policyMu).
	blocks []string
	ctx    context.Context
	// policyMu serialises policy changes (local file, controller bundle).
	policyMu sync.Mutex
	metrics  *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start brings the agent up and returns once it runs. NATS being
// unreachable is not an error (the client keeps retrying); an invalid
// policy file is, and leaves the policy already in the kernel in force.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateDir == "" {
		return nil, errors.New("state dir is required")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = heartbeat.DefaultInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &Agent{cfg: cfg, log: cfg.Logger, cancel: cancel, policy: &policyState{dir: cfg.StateDir}}
	a.acts = &actions{a: a}
	a.ctx = ctx
	if err := a.start(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) start(ctx context.Context) error {
	info := hostinfo.Read()
	if a.cfg.ControllerURL != "" || identityExists(a.cfg.StateDir) {
		var caPEM []byte
		if a.cfg.CAFile != "" {
			var err error
			if caPEM, err = os.ReadFile(a.cfg.CAFile); err != nil {
				return fmt.Errorf("read CA file: %w", err)
			}
		}
		id, err := enroll.Ensure(ctx, enroll.Config{
			StateDir: a.cfg.StateDir, ControllerURL: a.cfg.ControllerURL, Token: a.cfg.EnrollToken,
			Host: info, AgentVersion: version.Version, CAPEM: caPEM, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.id = id
		a.log = a.log.With("host", id.HostID)
	} else {
		a.log.Info("no controller and no identity: running standalone")
	}

	if a.cfg.CgroupPath != "" {
		if err := a.startSensor(ctx); err != nil {
			return err
		}
	} else if a.cfg.PolicyFile != "" {
		return errors.New("--policy needs --cgroup: the policy is enforced by the kernel sensors")
	}

	hostID := ""
	if a.id != nil {
		hostID = a.id.HostID
		sp, err := spool.Open(filepath.Join(a.cfg.StateDir, "spool"), spool.Options{MaxBytes: a.cfg.SpoolBytes})
		if err != nil {
			return fmt.Errorf("open spool: %w", err)
		}
		a.spool = sp
		nc, err := natsconn.Connect(a.id, a.log)
		if err != nil {
			return err
		}
		a.nc = nc
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		a.sender = &telemetry.Sender{JS: js, HostID: hostID, Spool: sp, Logger: a.log}
		a.goRun(func() { a.sender.Run(ctx) })
		a.fwd = &telemetry.Forwarder{Spool: a.spool, Logger: a.log}
		a.exec = &commands.Executor{
			HostID: hostID, SigningKey: ed25519.PublicKey(a.id.SigningPublicKey), StateDir: a.cfg.StateDir,
			Actions: a.acts, Result: a.fwd.AppendResult, Logger: a.log,
		}
		a.goRun(func() { a.exec.Run(ctx, js) })
		a.goRun(func() { a.watchPolicy(ctx, js) })
	}
	if a.fwd == nil {
		a.fwd = &telemetry.Forwarder{Logger: a.log}
	}
	if a.sensor != nil {
		evs := make(chan *palisadev1.Event, 4096)
		a.goRun(func() { a.runDetection(ctx, a.sensor.Events(), evs) })
		a.goRun(func() { a.fwd.Run(ctx, evs) })
	}
	if a.nc != nil {
		hb := &heartbeat.Publisher{
			Conn: a.nc, HostID: hostID, Interval: a.cfg.HeartbeatInterval, Logger: a.log,
			Static: &palisadev1.Heartbeat{
				Hostname: info.Hostname, Os: info.OS, Arch: info.Arch, Kernel: info.Kernel,
				AgentVersion: version.Version,
			},
			Build: a.status,
		}
		a.goRun(func() {
			if err := hb.Run(ctx); err != nil {
				a.log.Error("heartbeat stopped", "err", err)
			}
		})
	}
	if a.cfg.MetricsAddr != "" {
		if err := a.serveMetrics(); err != nil {
			return err
		}
	}
	attrs := []any{"scope", a.cfg.CgroupPath}
	if a.id != nil {
		attrs = append(attrs, "cluster", a.id.ClusterID, "nats", strings.Join(a.id.NATSURLs, ","))
	}
	a.log.Info("agent started", attrs...)
	return nil
}

// status fills a heartbeat's changing fields.
func (a *Agent) status(hb *palisadev1.Heartbeat) {
	cur := a.policy.current()
	hb.PolicyVersion, hb.PolicyRevision = cur.GetVersion(), cur.GetRevision()
	hb.EventsLost = a.fwd.Failed()
	if a.spool != nil {
		_, lost := a.spool.Stats()
		hb.EventsLost += lost
		hb.EventsSpooled = a.spool.Pending()
	}
	if a.sensor == nil {
		hb.Features = []*palisadev1.Feature{{Name: "sensors", Error: "no --cgroup scope configured"}}
		return
	}
	hb.Features = a.sensor.Features()
	hb.RingbufDrops = a.sensor.Drops()
	if q, err := a.sensor.Quarantined(); err == nil {
		hb.Quarantined = q
	}
}

func (a *Agent) serveMetrics() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.sensor != nil {
		reg.MustRegister(a.sensor.Collector())
	}
	if a.exec != nil {
		reg.MustRegister(a.exec.Collector())
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "palisade_agent_telemetry_sent_total", Help: "Telemetry items acknowledged by JetStream.",
	}, func() float64 {
		if a.sender == nil {
			return 0
		}
		return float64(a.sender.Sent())
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "palisade_agent_telemetry_lost_total", Help: "Telemetry items lost: not spooled, or dropped by the spool's bound.",
	}, func() float64 {
		lost := a.fwd.Failed()
		if a.spool != nil {
			_, l := a.spool.Stats()
			lost += l
		}
		return float64(lost)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "palisade_agent_telemetry_pending", Help: "Telemetry items spooled and not yet acknowledged.",
	}, func() float64 {
		if a.spool == nil {
			return 0
		}
		return float64(a.spool.Pending())
	}))
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen metrics %s: %w", a.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.goRun(func() {
		if err := a.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	})
	return nil
}

func (a *Agent) goRun(fn func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
	}()
}

func identityExists(dir string) bool {
	_, err := identity.Load(dir)
	return !errors.Is(err, identity.ErrNotEnrolled)
}

// HostID is the agent's host id ("" when standalone).
func (a *Agent) HostID() string {
	if a.id == nil {
		return ""
	}
	return a.id.HostID
}

// Identity returns the agent's identity (nil when standalone).
func (a *Agent) Identity() *identity.Identity { return a.id }

// Sensor returns the kernel sensor (nil without a scope).
func (a *Agent) Sensor() *sensor.Sensor { return a.sensor }

// Close stops the agent and waits for its goroutines. The kernel keeps
// enforcing the pinned policy; `palisade-agent cleanup` removes it.
func (a *Agent) Close() error {
	var errs []error
	a.once.Do(func() {
		a.cancel()
		if a.metrics != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.metrics.Shutdown(ctx)
			cancel()
		}
		if a.sensor != nil {
			if err := a.sensor.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close sensor: %w", err))
			}
		}
		a.wg.Wait()
		if a.nc != nil {
			if err := a.nc.Drain(); err != nil {
				a.nc.Close()
			}
		}
		if a.spool != nil {
			if err := a.spool.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close spool: %w", err))
			}
		}
	})
	return errors.Join(errs...)
}
