// Package sim runs a fleet of simulated agents in one process, to load a
// controller the way real hosts do. There is no BPF and no kernel
// enforcement here; everything between host and controller is real:
//
//   - each agent enrols through the API with its own one-time enrolment
//     token (created with an admin token) and keeps its identity in its
//     own state dir, so a rerun with the same dirs does not enrol again;
//   - it connects to NATS under its own nkey (agent/natsconn), so the
//     controller's per-host permissions apply;
//   - it heartbeats with heartbeat.Publisher;
//   - its events are numbered into a real on-disk spool (agent/spool) and
//     published by a real telemetry.Sender with JetStream acknowledgements;
//   - it executes signed commands with a real commands.Executor, whose
//     Actions only record what a host would have enforced (the quarantine
//     flag is a bool in memory);
//   - it follows the fleet policy through agent/policywatch, verifying the
//     signature and validating the bundle, and records the version.
//
// Memory and open files per agent are kept small: an agent opens its spool
// (small segments) and starts its sender only when it first has something
// to send, and one generator goroutine feeds every agent's events instead
// of one per agent. What remains per agent is its NATS connection (one
// socket, its buffers and goroutines) and its JetStream consumers.
package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/commands"
	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/agent/natsconn"
	"github.com/palisade-sec/palisade/agent/policywatch"
	"github.com/palisade-sec/palisade/agent/spool"
	"github.com/palisade-sec/palisade/agent/telemetry"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/version"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Defaults.
const (
	DefaultEnrollConcurrency = 16
	DefaultSpoolBytes        = 4 << 20
	DefaultSegmentBytes      = 256 << 10
	// ConnectConcurrency bounds agents waiting for their first NATS
	// connection at once.
	ConnectConcurrency = 1024
	// ConnectTimeout bounds an agent's first NATS connection.
	ConnectTimeout = 60 * time.Second
	// GenerateEvery is the period of the event generator.
	GenerateEvery = 100 * time.Millisecond
)

// Config configures a fleet.
type Config struct {
	// API is the controller's API URL (several, comma-separated, for a
	// cluster); AdminToken creates the enrolment tokens.
	API        string
	AdminToken string
	// StateDir holds one directory per agent (agent-00001, ...).
	StateDir string
	// HeartbeatInterval (0: heartbeat.DefaultInterval).
	HeartbeatInterval time.Duration
	// EventsPerSec is each agent's steady event rate (0: none; events
	// can still be added with Agent.AppendEvents).
	EventsPerSec float64
	// EnrollConcurrency bounds parallel enrolments and connects.
	EnrollConcurrency int
	// SpoolBytes and SegmentBytes size each agent's spool.
	SpoolBytes, SegmentBytes int64
	// OnPolicy, when set, sees every policy bundle an agent applied
	// (after signature verification and validation), in that agent's
	// goroutine. For benchmarks.
	OnPolicy func(a *Agent, b *palisadev1.PolicyBundle)
	Logger   *slog.Logger
}

// Fleet is a running set of simulated agents.
type Fleet struct {
	cfg Config
	log *slog.Logger
	api *apiclient.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	agents []*Agent
	closed bool
}

// New returns an empty fleet; Add starts agents.
func New(cfg Config) (*Fleet, error) {
	if cfg.API == "" {
		return nil, errors.New("sim: API URL is required")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("sim: state dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = heartbeat.DefaultInterval
	}
	if cfg.EnrollConcurrency <= 0 {
		cfg.EnrollConcurrency = DefaultEnrollConcurrency
	}
	if cfg.SpoolBytes <= 0 {
		cfg.SpoolBytes = DefaultSpoolBytes
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = DefaultSegmentBytes
	}
	api, err := apiclient.New(cfg.API, cfg.AdminToken)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cfg: cfg, log: cfg.Logger, api: api, ctx: ctx, cancel: cancel}
	if cfg.EventsPerSec > 0 {
		f.goRun(f.generate)
	}
	return f, nil
}

// Start is New followed by Add(n).
func Start(ctx context.Context, cfg Config, n int) (*Fleet, error) {
	f, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := f.Add(ctx, n); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Add starts n more agents (numbered after the existing ones), enrolling
// those whose state dir holds no identity. It returns once every new
// agent runs; on error the agents already started keep running.
func (f *Fleet) Add(ctx context.Context, n int) error {
	f.mu.Lock()
	first := len(f.agents)
	f.mu.Unlock()
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Enrol everyone first, then connect: the controller adds NATS users
	// in batches, so connecting agent by agent right after its enrolment
	// would make every batch as small as the enrolment concurrency.
	ids := make([]*identity.Identity, n)
	errs := make([]error, n)
	parallel(gctx, n, f.cfg.EnrollConcurrency, func(i int) {
		id, err := f.enrol(gctx, first+i+1)
		if err != nil {
			errs[i] = err
			cancel()
			return
		}
		ids[i] = id
	})
	started := make([]*Agent, n)
	parallel(gctx, n, max(f.cfg.EnrollConcurrency, ConnectConcurrency), func(i int) {
		if ids[i] == nil {
			return
		}
		a, err := f.startAgent(gctx, first+i+1, ids[i])
		if err != nil {
			errs[i] = err
			cancel()
			return
		}
		started[i] = a
	})
	err := errors.Join(errs...)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range started {
		if a == nil {
			continue
		}
		if f.closed {
			a.close()
			continue
		}
		f.agents = append(f.agents, a)
	}
	return err
}

// parallel runs fn(0..n-1), at most limit at a time, until ctx ends.
func parallel(ctx context.Context, n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// Agents is a snapshot of the running agents, in start order.
func (f *Fleet) Agents() []*Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Agent(nil), f.agents...)
}

// Stats sums the fleet's counters.
type Stats struct {
	Agents      int    `json:"agents"`
	Generated   uint64 `json:"events_generated"`
	Sent        uint64 `json:"telemetry_acked"`
	Pending     uint64 `json:"telemetry_pending"`
	Lost        uint64 `json:"telemetry_lost"`
	Quarantined int    `json:"quarantined"`
	Commands    uint64 `json:"commands_executed"`
	Reconnects  uint64 `json:"nats_reconnects"`
}

// Stats reports the fleet's counters.
func (f *Fleet) Stats() Stats {
	var s Stats
	for _, a := range f.Agents() {
		s.Agents++
		s.Generated += a.generated.Load()
		if t := a.telem.Load(); t != nil {
			s.Sent += t.sender.Sent()
			s.Pending += t.spool.Pending()
			_, lost := t.spool.Stats()
			s.Lost += lost + t.fwd.Failed()
		}
		if a.Quarantined() {
			s.Quarantined++
		}
		s.Commands += a.acts.executed.Load()
		s.Reconnects += a.nc.Stats().Reconnects
	}
	return s
}

// Close stops every agent.
func (f *Fleet) Close() error {
	f.mu.Lock()
	f.closed = true
	agents := f.agents
	f.agents = nil
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0))
	for _, a := range agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := a.close(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", a.HostID(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (f *Fleet) goRun(fn func()) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
}

// generate feeds every agent EventsPerSec events, in one batch per agent
// per GenerateEvery, from a single goroutine.
func (f *Fleet) generate() {
	t := time.NewTicker(GenerateEvery)
	defer t.Stop()
	credit := map[*Agent]float64{}
	last := time.Now()
	for {
		select {
		case <-f.ctx.Done():
			return
		case now := <-t.C:
			dt := now.Sub(last).Seconds()
			last = now
			for _, a := range f.Agents() {
				c := credit[a] + f.cfg.EventsPerSec*dt
				n := int(c)
				credit[a] = c - float64(n)
				if n == 0 {
					continue
				}
				if err := a.AppendEvents(n); err != nil {
					f.log.Warn("simulated events not spooled", "host", a.HostID(), "err", err)
				}
			}
		}
	}
}

// Agent is one simulated host.
type Agent struct {
	index int
	dir   string
	id    *identity.Identity
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	acts  *actions

	spoolOpts spool.Options
	telemMu   sync.Mutex
	telem     atomic.Pointer[telem]

	policyVersion  atomic.Uint64
	policyRevision atomic.Uint64
	policyAt       atomic.Int64 // unix ns when policyVersion was applied
	generated      atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (f *Fleet) agentDir(index int) string {
	return filepath.Join(f.cfg.StateDir, fmt.Sprintf("agent-%05d", index))
}

func agentInfo(index int) hostinfo.Info {
	return hostinfo.Info{Hostname: fmt.Sprintf("sim-%05d", index), OS: "linux", Arch: runtime.GOARCH, Kernel: "simulated"}
}

// enrol returns agent index's identity, enrolling it with a fresh
// one-time token unless its state dir already holds one.
func (f *Fleet) enrol(ctx context.Context, index int) (*identity.Identity, error) {
	dir := f.agentDir(index)
	ecfg := enroll.Config{
		StateDir: dir, ControllerURL: f.cfg.API, Host: agentInfo(index),
		AgentVersion: "sim-" + version.Version, Logger: f.log.With("sim_agent", index),
	}
	if _, err := identity.Load(dir); errors.Is(err, identity.ErrNotEnrolled) {
		tok, err := f.api.CreateEnrollToken(ctx, apiv1.CreateEnrollTokenRequest{
			TTL: "1h", Labels: map[string]string{"palisade-sim": "true"},
		})
		if err != nil {
			return nil, fmt.Errorf("sim agent %d: create enrolment token: %w", index, err)
		}
		ecfg.Token = tok.Token
	}
	id, err := enroll.Ensure(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("sim agent %d: %w", index, err)
	}
	return id, nil
}

func (f *Fleet) startAgent(ctx context.Context, index int, id *identity.Identity) (*Agent, error) {
	dir := f.agentDir(index)
	info := agentInfo(index)
	log := f.log.With("sim_agent", index)
	log = log.With("host", id.HostID)
	nc, err := natsconn.Connect(id, log)
	if err != nil {
		return nil, fmt.Errorf("sim agent %d: %w", index, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("sim agent %d: jetstream: %w", index, err)
	}
	actx, cancel := context.WithCancel(f.ctx)
	a := &Agent{index: index, dir: dir, id: id, nc: nc, js: js, log: log, ctx: actx, cancel: cancel,
		spoolOpts: spool.Options{MaxBytes: f.cfg.SpoolBytes, SegmentBytes: f.cfg.SegmentBytes}}
	a.acts = &actions{log: log}
	// A spool left with records by an earlier run drains at once; otherwise
	// it is opened on first use.
	if _, err := os.Stat(a.spoolDir()); err == nil {
		if _, err := a.telemetry(); err != nil {
			cancel()
			nc.Close()
			return nil, fmt.Errorf("sim agent %d: %w", index, err)
		}
	}
	exec := &commands.Executor{
		HostID: id.HostID, SigningKey: ed25519.PublicKey(id.SigningPublicKey), StateDir: dir,
		Actions: a.acts, Logger: log,
		Result: func(res *palisadev1.CommandResult) error {
			t, err := a.telemetry()
			if err != nil {
				return err
			}
			return t.fwd.AppendResult(res)
		},
	}
	pw := &policywatch.Watcher{
		JS: js, SigningKey: ed25519.PublicKey(id.SigningPublicKey), Logger: log,
		Apply: func(b *palisadev1.PolicyBundle) error {
			a.policyVersion.Store(b.GetVersion())
			a.policyRevision.Store(b.GetRevision())
			a.policyAt.Store(time.Now().UnixNano())
			if f.cfg.OnPolicy != nil {
				f.cfg.OnPolicy(a, b)
			}
			return nil
		},
	}
	hb := &heartbeat.Publisher{
		Conn: nc, HostID: id.HostID, Interval: f.cfg.HeartbeatInterval, Logger: log,
		Static: &palisadev1.Heartbeat{
			Hostname: info.Hostname, Os: info.OS, Arch: info.Arch, Kernel: info.Kernel,
			AgentVersion: "sim-" + version.Version,
			Features:     []*palisadev1.Feature{{Name: "sensors", Error: "simulated agent (palisade-sim): no kernel sensors"}},
		},
		Build: a.status,
	}
	// Add returns once every agent is connected (the controller adds an
	// enrolled agent's NATS user asynchronously).
	if err := waitConnected(ctx, nc); err != nil {
		a.close()
		return nil, fmt.Errorf("sim agent %d: %w", index, err)
	}
	a.goRun(func() { exec.Run(actx, js) })
	a.goRun(func() { pw.Run(actx) })
	a.goRun(func() {
		if err := hb.Run(actx); err != nil {
			log.Error("heartbeat stopped", "err", err)
		}
	})
	return a, nil
}

// waitConnected waits (at most ConnectTimeout) for nc to be connected.
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(ConnectTimeout)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not connected to NATS within %s", ConnectTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
	return nil
}

func (a *Agent) goRun(fn func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
	}()
}

func (a *Agent) status(hb *palisadev1.Heartbeat) {
	hb.PolicyVersion = a.policyVersion.Load()
	hb.Quarantined = a.acts.quarantined.Load()
	if t := a.telem.Load(); t != nil {
		_, lost := t.spool.Stats()
		hb.EventsLost = lost + t.fwd.Failed()
		hb.EventsSpooled = t.spool.Pending()
	}
}

// telem is an agent's telemetry path: spool, forwarder, sender.
type telem struct {
	spool  *spool.Spool
	fwd    *telemetry.Forwarder
	sender *telemetry.Sender
}

func (a *Agent) spoolDir() string { return filepath.Join(a.dir, "spool") }

// telemetry opens the spool and starts the sender on first use: an idle
// simulated agent then holds no spool file open and no write buffer (the
// open-file limit, not memory, bounds a fleet in one process).
func (a *Agent) telemetry() (*telem, error) {
	if t := a.telem.Load(); t != nil {
		return t, nil
	}
	a.telemMu.Lock()
	defer a.telemMu.Unlock()
	if t := a.telem.Load(); t != nil {
		return t, nil
	}
	if a.ctx.Err() != nil {
		return nil, errors.New("agent stopped")
	}
	sp, err := spool.Open(a.spoolDir(), a.spoolOpts)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	t := &telem{
		spool:  sp,
		fwd:    &telemetry.Forwarder{Spool: sp, Logger: a.log},
		sender: &telemetry.Sender{JS: a.js, HostID: a.id.HostID, Spool: sp, Logger: a.log},
	}
	a.telem.Store(t)
	a.goRun(func() { t.sender.Run(a.ctx) })
	return t, nil
}

func (a *Agent) close() error {
	a.telemMu.Lock() // no sender starts after this
	a.cancel()
	a.telemMu.Unlock()
	a.wg.Wait()
	if err := a.nc.Drain(); err != nil {
		a.nc.Close()
	}
	a.telemMu.Lock()
	defer a.telemMu.Unlock()
	if t := a.telem.Load(); t != nil {
		return t.spool.Close()
	}
	return nil
}

// HostID is the agent's enrolled host id.
func (a *Agent) HostID() string { return a.id.HostID }

// Index is the agent's number in the fleet (1-based; its state dir name).
func (a *Agent) Index() int { return a.index }

// Quarantined is the simulated quarantine flag.
func (a *Agent) Quarantined() bool { return a.acts.quarantined.Load() }

// PolicyVersion is the version and revision (fleet IOCs and leaked keys
// included) of the last policy bundle applied, and when it was applied.
func (a *Agent) PolicyVersion() (version, revision uint64, at time.Time) {
	return a.policyVersion.Load(), a.policyRevision.Load(), time.Unix(0, a.policyAt.Load())
}

// Sent counts telemetry items JetStream acknowledged; Pending those
// spooled and not yet acknowledged.
func (a *Agent) Sent() uint64 {
	if t := a.telem.Load(); t != nil {
		return t.sender.Sent()
	}
	return 0
}

func (a *Agent) Pending() uint64 {
	if t := a.telem.Load(); t != nil {
		return t.spool.Pending()
	}
	return 0
}

// NextSeq is the sequence number the agent's next telemetry item gets.
// It opens the spool if needed (0 if that fails).
func (a *Agent) NextSeq() uint64 {
	t, err := a.telemetry()
	if err != nil {
		return 0
	}
	return t.spool.NextSeq()
}

// AppendEvents spools n synthetic exec events (in batches of at most
// telemetry.MaxBatch) and returns the sequence numbers they got.
func (a *Agent) AppendEvents(n int) error {
	now := timestamppb.Now()
	for n > 0 {
		k := min(n, telemetry.MaxBatch)
		evs := make([]*palisadev1.Event, k)
		for i := range evs {
			pid := uint32(1000 + (a.generated.Load()+uint64(i))%30000)
			evs[i] = &palisadev1.Event{
				Time: now,
				Process: &palisadev1.Process{
					Pid: pid, Ppid: 1, Comm: "sim-worker", ExePath: "/usr/bin/sim-worker",
					Argv: []string{"/usr/bin/sim-worker", "--simulated"},
				},
				Kind: &palisadev1.Event_Exec{Exec: &palisadev1.ExecEvent{
					Filename: "/usr/bin/sim-worker", Verdict: palisadev1.Verdict_VERDICT_ALLOWED,
				}},
			}
		}
		t, err := a.telemetry()
		if err != nil {
			return err
		}
		if err := t.fwd.AppendEvents(evs); err != nil {
			return err
		}
		a.generated.Add(uint64(k))
		n -= k
	}
	return nil
}

// actions simulate enforcement: they record what a real agent would have
// done in its kernel, and succeed.
type actions struct {
	log         *slog.Logger
	quarantined atomic.Bool
	executed    atomic.Uint64
	mu          sync.Mutex
	blocked     map[string]time.Time
}

func (x *actions) Quarantine(reason string) error {
	x.quarantined.Store(true)
	x.executed.Add(1)
	x.log.Debug("simulated quarantine", "reason", reason)
	return nil
}

func (x *actions) Release(reason string) error {
	x.quarantined.Store(false)
	x.executed.Add(1)
	x.log.Debug("simulated release", "reason", reason)
	return nil
}

func (x *actions) Kill(pid uint32, _ time.Time, tree bool) error {
	x.executed.Add(1)
	x.log.Debug("simulated kill", "pid", pid, "tree", tree)
	return nil
}

func (x *actions) Block(cidr string, expires time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.blocked == nil {
		x.blocked = map[string]time.Time{}
	}
	x.blocked[cidr] = expires
	x.executed.Add(1)
	return nil
}

func (x *actions) Hunt(hunt.Key) (string, error) {
	x.executed.Add(1)
	return "simulated agent: nothing searched, nothing found", nil
}
