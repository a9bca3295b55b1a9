// Package store owns the controller's Raft node: the log and stable store
// (raft-boltdb/v2), file snapshots, the TCP transport, and the FSM. It
// proposes FSM commands and waits for them to be applied.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/controller/fsm"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// ErrNotLeader is returned by Apply on a node that is not the leader.
var ErrNotLeader = errors.New("not the raft leader")

// Config configures a Store.
type Config struct {
	NodeID   string
	DataDir  string
	RaftAddr string // host:port to bind; also advertised
	// Bootstrap makes this node the first voter of a new cluster. It is a
	// no-op when the data dir already holds Raft state.
	Bootstrap bool
	Logger    *slog.Logger
	// Tuning; zero values take hashicorp/raft's defaults.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log
	// (default 10240); a follower further behind gets the snapshot.
	TrailingLogs uint64
	// MaxAppendEntries bounds entries per AppendEntries RPC and per
	// batch of applies (default 64, at most 1024).
	MaxAppendEntries int
	// BatchApply lets Raft apply several proposals in one log write.
	BatchApply bool
	// RaftLogOutput receives hashicorp/raft's own log lines, WARN and above
	// (default: Logger).
	RaftLogOutput io.Writer
}

// Store is one controller node's Raft participant.
type Store struct {
	cfg       Config
	log       *slog.Logger
	fsm       *fsm.FSM
	raft      *raft.Raft
	transport *raft.NetworkTransport
	layer     *faultLayer
	bolt      *raftboltdb.BoltStore
	hadState  bool
}

// HadState reports whether the data dir held Raft state when the node
// opened (a node that did not must bootstrap or join).
func (s *Store) HadState() bool { return s.hadState }

// Open starts the Raft node. The caller must Close it.
func Open(cfg Config) (*Store, error) {
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return nil, errors.New("store: node id, data dir and raft address are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger, fsm: fsm.New(cfg.Logger)}

	out := cfg.RaftLogOutput
	if out == nil {
		out = slogWriter{cfg.Logger.With("component", "raft")}
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: out})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.MaxAppendEntries > 0 {
		rc.MaxAppendEntries = cfg.MaxAppendEntries
	}
	rc.BatchApplyCh = cfg.BatchApply

	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("open raft log store: %w", err)
	}
	s.bolt = bolt
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hl)
	if err != nil {
		s.bolt.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		s.bolt.Close()
		return nil, fmt.Errorf("resolve raft address %q: %w", cfg.RaftAddr, err)
	}
	var advertise net.Addr = addr
	if addr.Port == 0 {
		advertise = nil // a random port: advertise what the listener got
	}
	layer, err := newFaultLayer(cfg.RaftAddr, advertise)
	if err != nil {
		s.bolt.Close()
		return nil, fmt.Errorf("listen raft %s: %w", cfg.RaftAddr, err)
	}
	s.layer = layer
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 4, Timeout: 10 * time.Second, Logger: hl,
	})
	s.transport = tr

	hasState, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		s.closeTransport()
		return nil, fmt.Errorf("check raft state: %w", err)
	}
	s.hadState = hasState
	r, err := raft.NewRaft(rc, s.fsm, bolt, bolt, snaps, tr)
	if err != nil {
		s.closeTransport()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	if cfg.Bootstrap && !hasState {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: tr.LocalAddr(), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = s.Close()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	return s, nil
}

func (s *Store) closeTransport() {
	if s.transport != nil {
		_ = s.transport.Close()
	}
	_ = s.bolt.Close()
}

// Close shuts the Raft node down and releases its stores.
func (s *Store) Close() error {
	var errs []error
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if s.transport != nil {
		if err := s.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	if err := s.bolt.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close log store: %w", err))
	}
	return errors.Join(errs...)
}

// FSM returns the state machine for reads.
func (s *Store) FSM() *fsm.FSM { return s.fsm }

// NodeID is this node's Raft id.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Addr is this node's Raft address.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// IsLeader reports whether this node leads.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's address and id, empty when unknown.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// LeaderCh reports leadership changes of this node.
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// WaitForLeader blocks until some node is leader or ctx ends.
func (s *Store) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if a, _ := s.raft.LeaderWithID(); a != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// WaitForApplied blocks until the FSM has applied index or ctx ends.
func (s *Store) WaitForApplied(ctx context.Context, index uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.raft.AppliedIndex() < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d: %w", index, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Apply proposes cmd and waits until it is committed and applied on this
// node (the leader). It returns the log index, or the state error the FSM
// handler returned.
func (s *Store) Apply(ctx context.Context, cmd *palisadev1.FSMCommand) (uint64, error) {
	res, err := s.ApplyResult(ctx, cmd)
	if err != nil {
		return 0, err
	}
	return res.Index, res.Err
}

// ErrUncertain wraps failures after which the command may or may not have
// been committed (leadership lost mid-flight, a timeout): retry only with
// the same idempotency key.
var ErrUncertain = errors.New("outcome unknown")

// ApplyResult is Apply returning the FSM's whole result (idempotent
// replays, result ids). A non-nil error means the command's fate is not
// known from this node (ErrNotLeader: never proposed; ErrUncertain: maybe
// committed); the FSM's own state error is in Result.Err.
func (s *Store) ApplyResult(ctx context.Context, cmd *palisadev1.FSMCommand) (*fsm.Result, error) {
	if s.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout <= 0 {
			return nil, fmt.Errorf("apply: %w", context.DeadlineExceeded)
		}
	}
	f := s.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, fmt.Errorf("apply: %w: %w", ErrNotLeader, err)
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("apply: %w: %w: %w", ErrNotLeader, ErrUncertain, err)
		}
		return nil, fmt.Errorf("apply: %w: %w", ErrUncertain, err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return &fsm.Result{Index: f.Index()}, nil
	}
	return res, nil
}

// Snapshot forces a snapshot (tests and operators).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// SetIsolated cuts (true) or restores (false) all of this node's Raft
// traffic: fault injection for partition tests and benchmarks.
func (s *Store) SetIsolated(on bool) { s.layer.setIsolated(on) }

// State is this node's Raft state: Leader, Follower, Candidate, Shutdown.
func (s *Store) State() string { return s.raft.State().String() }

// AppliedIndex is the index of the last entry applied to the FSM.
func (s *Store) AppliedIndex() uint64 { return s.raft.AppliedIndex() }

// Server is one member of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Servers returns the current Raft configuration.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var out []Server
	for _, srv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, ctxTimeout(ctx)).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("add voter %s: %w", id, ErrNotLeader)
		}
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a member. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, ctxTimeout(ctx)).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("remove server %s: %w", id, ErrNotLeader)
		}
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this node still leads and
// then waits until the FSM has applied everything committed before:
// after it returns nil, a read of the FSM is linearizable.
func (s *Store) VerifyLeader(ctx context.Context) error {
	if err := s.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("verify leader: %w", ErrNotLeader)
		}
		return fmt.Errorf("verify leader: %w", err)
	}
	return s.Barrier(ctx)
}

func ctxTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 10 * time.Second
}

// Stats exposes hashicorp/raft's stats map.
func (s *Store) Stats() map[string]string { return s.raft.Stats() }

// slogWriter forwards hashicorp/raft's own log lines (WARN and above) to
// slog, so every line the controller writes is structured.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Barrier waits until every entry committed before it is applied to the
// FSM. Only the leader can issue it.
func (s *Store) Barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("barrier: %w: %w", ErrNotLeader, err)
		}
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

// FirstLogIndex is the oldest entry still in the log (it grows as
// snapshots compact the log).
func FirstLogIndex(s *Store) (uint64, error) {
	i, err := s.bolt.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("first log index: %w", err)
	}
	return i, nil
}

// TransferLeadership asks another voter to take over (leader only).
func (s *Store) TransferLeadership() error {
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	return nil
}
