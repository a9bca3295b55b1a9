// Package commands executes the controller's signed commands on the host.
//
// Each command is verified (signature against the key pinned at enrolment,
// addressed to this host, not expired), executed at most once — a replay
// of a command id gets the stored result, nothing runs twice — and
// answered with a CommandResult. Executed command ids are kept in the
// state dir until they expire, so replays are recognised across restarts.
package commands

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/internal/backoff"
	"github.com/palisade-sec/palisade/internal/cmdsign"
	"github.com/palisade-sec/palisade/internal/fileutil"
	"github.com/palisade-sec/palisade/internal/streams"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// SeenFile, in the state dir, records executed commands until expiry.
const SeenFile = "commands.json"

// Actions are what commands can make the host do. Each must be
// idempotent: the executor calls it once per command id, but a second
// command asking for the state already in force must succeed.
type Actions interface {
	Quarantine(reason string) error
	Release(reason string) error
	Kill(pid uint32, startTime time.Time, tree bool) error
	Block(cidr string, expires time.Time) error
	// Hunt searches for a leaked key id.
	Hunt(k hunt.Key) (detail string, err error)
}

// Executor verifies and runs commands.
type Executor struct {
	HostID     string
	SigningKey ed25519.PublicKey
	StateDir   string
	Actions    Actions
	// Result receives every result to send (the spool); an error makes
	// the command message be redelivered.
	Result func(*palisadev1.CommandResult) error
	Logger *slog.Logger
	Now    func() time.Time

	mu     sync.Mutex
	seen   map[string]seenEntry
	loaded bool

	rejected *prometheus.CounterVec
}

type seenEntry struct {
	Result  []byte    `json:"result"`
	Expires time.Time `json:"expires"`
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Collector exposes rejected-command counts by reason.
func (e *Executor) Collector() prometheus.Collector {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.initMetrics()
	return e.rejected
}

func (e *Executor) initMetrics() {
	if e.rejected == nil {
		e.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_agent_commands_rejected_total", Help: "Commands refused: bad signature, another host, malformed.",
		}, []string{"reason"})
	}
}

// Handle processes one SignedCommand. It returns the result to send, or
// nil with an error for a command that must not be answered (it could not
// be authenticated).
func (e *Executor) Handle(data []byte) (*palisadev1.CommandResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.initMetrics()
	if err := e.load(); err != nil {
		return nil, err
	}
	cmd, err := cmdsign.Verify(e.SigningKey, e.HostID, data, e.now())
	switch {
	case errors.Is(err, cmdsign.ErrExpired):
		return e.result(cmd, fmt.Errorf("not executed: %w", err), ""), nil
	case err != nil:
		reason := "malformed"
		if errors.Is(err, cmdsign.ErrBadSignature) {
			reason = "signature"
		} else if errors.Is(err, cmdsign.ErrWrongHost) {
			reason = "host"
		}
		e.rejected.WithLabelValues(reason).Inc()
		e.Logger.Warn("command rejected", "reason", reason, "err", err)
		return nil, err
	}
	if s, ok := e.seen[cmd.GetCommandId()]; ok {
		var res palisadev1.CommandResult
		if err := proto.Unmarshal(s.Result, &res); err == nil {
			e.Logger.Info("command replayed: answering with its recorded result", "command", cmd.GetCommandId())
			return &res, nil
		}
	}
	detail, err := e.execute(cmd)
	res := e.result(cmd, err, detail)
	b, merr := proto.Marshal(res)
	if merr != nil {
		return nil, fmt.Errorf("encode result: %w", merr)
	}
	e.seen[cmd.GetCommandId()] = seenEntry{Result: b, Expires: cmd.GetExpiresAt().AsTime()}
	if err := e.save(); err != nil {
		e.Logger.Error("executed command not recorded; a replay would run it again", "command", cmd.GetCommandId(), "err", err)
	}
	e.Logger.Info("command executed", "command", cmd.GetCommandId(), "action", cmd.GetActionId(), "ok", res.GetOk(), "err", res.GetError())
	return res, nil
}

func (e *Executor) execute(cmd *palisadev1.Command) (string, error) {
	switch k := cmd.GetKind().(type) {
	case *palisadev1.Command_Quarantine:
		return "quarantined", e.Actions.Quarantine(k.Quarantine.GetReason())
	case *palisadev1.Command_Release:
		return "released", e.Actions.Release(k.Release.GetReason())
	case *palisadev1.Command_Kill:
		var st time.Time
		if k.Kill.GetStartTime() != nil {
			st = k.Kill.GetStartTime().AsTime()
		}
		return fmt.Sprintf("killed pid %d", k.Kill.GetPid()), e.Actions.Kill(k.Kill.GetPid(), st, k.Kill.GetTree())
	case *palisadev1.Command_Block:
		var exp time.Time
		if k.Block.GetExpiresAt() != nil {
			exp = k.Block.GetExpiresAt().AsTime()
		}
		return "blocked " + k.Block.GetCidr(), e.Actions.Block(k.Block.GetCidr(), exp)
	case *palisadev1.Command_Hunt:
		h := k.Hunt
		return e.Actions.Hunt(hunt.Key{ID: h.GetKeyId(), SHA256: h.GetKeyIdSha256(), Prefix: h.GetKeyIdPrefix(),
			Length: int(h.GetKeyIdLength()), Masked: h.GetKeyIdMasked()})
	}
	return "", errors.New("unknown command kind")
}

func (e *Executor) result(cmd *palisadev1.Command, err error, detail string) *palisadev1.CommandResult {
	res := &palisadev1.CommandResult{
		CommandId: cmd.GetCommandId(), HostId: e.HostID, ActionId: cmd.GetActionId(),
		Ok: err == nil, Detail: detail, Time: timestamppb.New(e.now()),
	}
	if err != nil {
		res.Error = err.Error()
		res.Detail = ""
	}
	return res
}

func (e *Executor) load() error {
	if e.loaded {
		return nil
	}
	e.seen = map[string]seenEntry{}
	data, err := os.ReadFile(filepath.Join(e.StateDir, SeenFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read executed commands: %w", err)
	}
	if err == nil {
		if err := json.Unmarshal(data, &e.seen); err != nil {
			return fmt.Errorf("executed commands file is corrupt: %w", err)
		}
	}
	e.loaded = true
	return nil
}

// save writes the executed commands, dropping expired ones.
func (e *Executor) save() error {
	now := e.now()
	for id, s := range e.seen {
		if now.After(s.Expires) {
			delete(e.seen, id)
		}
	}
	data, err := json.Marshal(e.seen)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(filepath.Join(e.StateDir, SeenFile), data, 0o600)
}

// Run pulls the host's commands from its durable consumer until ctx ends.
// A command is acknowledged only after its result is spooled, so a crash
// in between redelivers it (and the replay record answers it).
func (e *Executor) Run(ctx context.Context, js jetstream.JetStream) {
	// Until the leader created this host's consumer (or while the server
	// is away) retry with growing, jittered delays, so a whole fleet does
	// not ask every second.
	b := &backoff.Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second}
	for ctx.Err() == nil {
		start := time.Now()
		if err := e.consume(ctx, js); err != nil && ctx.Err() == nil {
			if time.Since(start) > time.Minute {
				b.Reset()
			}
			e.Logger.Debug("command consumer unavailable; retrying", "err", err)
			b.Wait(ctx)
		}
	}
}

func (e *Executor) consume(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.Consumer(ctx, streams.Commands, streams.AgentConsumer(e.HostID))
	if err != nil {
		return fmt.Errorf("command consumer: %w", err)
	}
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		res, err := e.Handle(m.Data())
		if res == nil {
			// Unauthenticated: never executed, never answered.
			_ = m.Term()
			_ = err
			return
		}
		if err := e.Result(res); err != nil {
			e.Logger.Error("command result not spooled; will be redelivered", "err", err)
			_ = m.Nak()
			return
		}
		_ = m.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			select {
			case failed <- err:
			default:
			}
		}
	}))
	if err != nil {
		return fmt.Errorf("consume commands: %w", err)
	}
	defer cc.Stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		return err
	}
}
