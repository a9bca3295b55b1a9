// Package daemon wires one agent together: identity (enrolment), the NATS
// connection under the agent's own nkey, and the heartbeat. main only
// parses flags and calls Start; the service wrapper does the same.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/internal/subjects"
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
	Logger     *slog.Logger
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	id  *identity.Identity
	nc  *nats.Conn

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start enrols if needed, connects to NATS and starts the heartbeat. It
// returns once the agent runs; NATS being unreachable is not an error (the
// client keeps retrying).
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
	info := hostinfo.Read()
	id, err := enroll.Ensure(ctx, enroll.Config{
		StateDir: cfg.StateDir, ControllerURL: cfg.ControllerURL, Token: cfg.EnrollToken,
		Host: info, AgentVersion: version.Version, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("host", id.HostID)
	nc, err := connect(id, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &Agent{cfg: cfg, log: log, id: id, nc: nc, cancel: cancel}
	hb := &heartbeat.Publisher{
		Conn: nc, HostID: id.HostID, Interval: cfg.HeartbeatInterval, Logger: log,
		Static: &palisadev1.Heartbeat{
			Hostname: info.Hostname, Os: info.OS, Arch: info.Arch, Kernel: info.Kernel,
			AgentVersion: version.Version,
		},
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := hb.Run(ctx); err != nil {
			log.Error("heartbeat stopped", "err", err)
		}
	}()
	log.Info("agent started", "cluster", id.ClusterID, "nats", strings.Join(id.NATSURLs, ","))
	return a, nil
}

func connect(id *identity.Identity, log *slog.Logger) (*nats.Conn, error) {
	kp, err := nkeys.FromSeed([]byte(id.NKeySeed))
	if err != nil {
		return nil, fmt.Errorf("load nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil {
		return nil, fmt.Errorf("nkey public key: %w", err)
	}
	seed := []byte(id.NKeySeed)
	nc, err := nats.Connect(strings.Join(id.NATSURLs, ","),
		nats.Name("palisade-agent "+id.HostID),
		nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			k, err := nkeys.FromSeed(seed)
			if err != nil {
				return nil, err
			}
			defer k.Wipe()
			return k.Sign(nonce)
		}),
		nats.CustomInboxPrefix(subjects.Inbox(id.HostID)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats error", "err", err) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	return nc, nil
}

// HostID is the agent's host id.
func (a *Agent) HostID() string { return a.id.HostID }

// Identity returns the agent's identity.
func (a *Agent) Identity() *identity.Identity { return a.id }

// Close stops the agent and waits for its goroutines.
func (a *Agent) Close() error {
	a.once.Do(func() {
		a.cancel()
		a.wg.Wait()
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
	})
	return nil
}
