// Package dispatch is the leader's half of the containment loop: it turns
// requested actions into signed commands on the COMMANDS stream, records
// them as sent once JetStream stored them, moves them to acked or failed
// when the host's result comes back, and to expired when no answer came in
// time. An action counts as done only when the agent confirmed it.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/cmdsign"
	"github.com/palisade-sec/palisade/internal/secret"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// DefaultTTL is a command's lifetime when its action sets no expiry.
const DefaultTTL = 10 * time.Minute

// Dispatcher sends actions to hosts.
type Dispatcher struct {
	Store *store.Store
	JS    jetstream.JetStream
	Log   *slog.Logger
	// Changed is signalled when the FSM changed (new actions to send).
	Changed <-chan struct{}
	Now     func() time.Time
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		d.dispatchRequested(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.Changed:
		case <-sweep.C:
			d.expire(ctx)
		}
	}
}

func pending(states ...palisadev1.ActionState) func(*palisadev1.Action) bool {
	return func(a *palisadev1.Action) bool {
		if a.GetHostId() == "*" {
			return false // fleet-wide actions fan out elsewhere
		}
		for _, s := range states {
			if a.GetState() == s {
				return true
			}
		}
		return false
	}
}

func (d *Dispatcher) dispatchRequested(ctx context.Context) {
	var (
		actions []*palisadev1.Action
		seed    []byte
		leaks   = map[string]*palisadev1.LeakedCredential{}
	)
	d.Store.FSM().Read(func(s *fsm.State) {
		actions = s.Actions(pending(palisadev1.ActionState_ACTION_STATE_REQUESTED), 0)
		seed = s.Cluster().GetSigningSeed()
		for _, l := range s.LeakedCredentials() {
			leaks[l.GetKeyIdSha256()] = l
		}
	})
	for _, a := range actions {
		if ctx.Err() != nil {
			return
		}
		if err := d.send(ctx, seed, a, leaks[a.GetKeyIdSha256()]); err != nil {
			d.Log.Warn("action not sent; will retry", "action", a.GetId(), "host", a.GetHostId(), "err", err)
		}
	}
}

// Command builds the command that carries an action; leak describes the
// key a hunt looks for (nil for other kinds).
func Command(a *palisadev1.Action, leak *palisadev1.LeakedCredential, now time.Time) (*palisadev1.Command, error) {
	exp := now.Add(DefaultTTL)
	if a.GetExpiresAt() != nil {
		exp = a.GetExpiresAt().AsTime()
	}
	cmd := &palisadev1.Command{
		CommandId: a.GetId(), HostId: a.GetHostId(), ActionId: a.GetId(),
		IssuedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(exp),
	}
	switch a.GetKind() {
	case palisadev1.ActionKind_ACTION_KIND_QUARANTINE:
		cmd.Kind = &palisadev1.Command_Quarantine{Quarantine: &palisadev1.QuarantineCommand{Reason: a.GetReason()}}
	case palisadev1.ActionKind_ACTION_KIND_RELEASE:
		cmd.Kind = &palisadev1.Command_Release{Release: &palisadev1.ReleaseCommand{Reason: a.GetReason()}}
	case palisadev1.ActionKind_ACTION_KIND_KILL:
		cmd.Kind = &palisadev1.Command_Kill{Kill: &palisadev1.KillProcessCommand{Pid: a.GetPid(), StartTime: a.GetProcessStartTime(), Tree: a.GetTree()}}
	case palisadev1.ActionKind_ACTION_KIND_BLOCK:
		cmd.Kind = &palisadev1.Command_Block{Block: &palisadev1.BlockAddressCommand{Cidr: a.GetCidr(), ExpiresAt: a.GetExpiresAt()}}
	case palisadev1.ActionKind_ACTION_KIND_HUNT_CREDENTIAL:
		if leak == nil {
			return nil, fmt.Errorf("hunt: no leaked credential with the key id's hash %s", a.GetKeyIdSha256())
		}
		cmd.Kind = &palisadev1.Command_Hunt{Hunt: &palisadev1.HuntCredentialCommand{KeyIdSha256: leak.GetKeyIdSha256(),
			KeyIdPrefix: leak.GetKeyIdPrefix(), KeyIdLength: leak.GetKeyIdLength(), KeyIdMasked: leak.GetKeyIdMasked()}}
	default:
		return nil, fmt.Errorf("action kind %s has no command", a.GetKind())
	}
	return cmd, nil
}

func (d *Dispatcher) send(ctx context.Context, seed []byte, a *palisadev1.Action, leak *palisadev1.LeakedCredential) error {
	now := d.now()
	cmd, err := Command(a, leak, now)
	if err != nil {
		return d.update(ctx, a.GetId(), palisadev1.ActionState_ACTION_STATE_FAILED, err.Error(), "")
	}
	if !now.Before(cmd.GetExpiresAt().AsTime()) {
		return d.update(ctx, a.GetId(), palisadev1.ActionState_ACTION_STATE_EXPIRED, "expired before it could be sent", "")
	}
	data, err := cmdsign.Sign(seed, cmd)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(subjects.Command(a.GetHostId()))
	msg.Data = data
	// The stream drops a second copy if a new leader sends it again.
	msg.Header.Set(jetstream.MsgIDHeader, a.GetId())
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.JS.PublishMsg(pctx, msg); err != nil {
		return fmt.Errorf("publish command: %w", err)
	}
	return d.update(ctx, a.GetId(), palisadev1.ActionState_ACTION_STATE_SENT, "", "")
}

// expire moves actions whose commands can no longer be executed.
func (d *Dispatcher) expire(ctx context.Context) {
	now := d.now()
	var actions []*palisadev1.Action
	d.Store.FSM().Read(func(s *fsm.State) {
		actions = s.Actions(pending(palisadev1.ActionState_ACTION_STATE_SENT, palisadev1.ActionState_ACTION_STATE_REQUESTED), 0)
	})
	for _, a := range actions {
		exp := a.GetRequestedAt().AsTime().Add(DefaultTTL)
		if a.GetExpiresAt() != nil {
			exp = a.GetExpiresAt().AsTime()
		}
		if now.After(exp) {
			if err := d.update(ctx, a.GetId(), palisadev1.ActionState_ACTION_STATE_EXPIRED, "no confirmation from the host before the command expired", ""); err != nil {
				d.Log.Warn("expire action", "action", a.GetId(), "err", err)
			}
		}
	}
}

// Result records a host's answer to a command.
func (d *Dispatcher) Result(ctx context.Context, hostID string, res *palisadev1.CommandResult) error {
	var a *palisadev1.Action
	var ok bool
	d.Store.FSM().Read(func(s *fsm.State) { a, ok = s.Action(res.GetActionId()) })
	if !ok || a.GetHostId() != hostID {
		d.Log.Warn("result for an unknown action, or from another host", "action", res.GetActionId(), "host", hostID)
		return nil
	}
	if a.GetState() != palisadev1.ActionState_ACTION_STATE_SENT && a.GetState() != palisadev1.ActionState_ACTION_STATE_REQUESTED {
		return nil // already final (a replayed answer)
	}
	state := palisadev1.ActionState_ACTION_STATE_ACKED
	if !res.GetOk() {
		state = palisadev1.ActionState_ACTION_STATE_FAILED
	}
	return d.update(ctx, a.GetId(), state, res.GetError(), res.GetDetail())
}

func (d *Dispatcher) update(ctx context.Context, id string, state palisadev1.ActionState, errText, detail string) error {
	_, err := d.Store.Apply(ctx, &palisadev1.FSMCommand{
		Time: timestamppb.New(d.now()), Actor: "system:dispatch", RequestId: secret.ID("req-"),
		Cmd: &palisadev1.FSMCommand_UpdateAction{UpdateAction: &palisadev1.UpdateActionCmd{
			ActionId: id, State: state, Error: errText, Detail: detail,
		}},
	})
	if errors.Is(err, fsm.ErrConflict) {
		return nil // someone else moved it first
	}
	return err
}
