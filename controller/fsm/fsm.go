// Package fsm holds the controller's replicated state and applies Raft log
// entries to it.
//
// Every log entry is a protobuf palisadev1.FSMCommand. Apply decodes it and
// switches on its type; each command has one short handler. The leader
// stamps time, ids and the actor before proposing, so applying the same log
// gives the same state on every node. A decode failure is a programming
// error (the entry is skipped and logged); a state error (a used enrolment
// token, say) is returned to the proposer as the apply response and changes
// nothing.
//
// Snapshots are a stream of length-delimited SnapshotRecord messages: a
// header, then one record per object. Restore builds fresh state and swaps
// it in under the lock.
package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Errors returned by apply handlers as state errors.
var (
	ErrTokenInvalid  = errors.New("enrolment token is not valid")
	ErrTokenUsed     = errors.New("enrolment token was already used")
	ErrTokenExpired  = errors.New("enrolment token has expired")
	ErrExists        = errors.New("already exists")
	ErrNotFound      = errors.New("not found")
	ErrAlreadyInited = errors.New("cluster is already initialised")
	ErrUnknownCmd    = errors.New("unknown command")
	// ErrConflict: the change does not fit the object's current state
	// (resolving a resolved incident, releasing a host that is not
	// quarantined, acking an expired action).
	ErrConflict = errors.New("conflicts with the current state")
	// ErrInvalid: the command itself is malformed (missing ids, unknown
	// enum values). The API validates before proposing, so this is a
	// programming error or a hand-made command.
	ErrInvalid = errors.New("invalid command")
	// ErrIdempotencyMismatch: an idempotency key was reused for a
	// different request.
	ErrIdempotencyMismatch = errors.New("idempotency key was already used for a different request")
)

// Result is what Apply returns for every entry: the error (a state error)
// and the log index it was applied at.
type Result struct {
	Index uint64
	Err   error
	// ResultID is the id of what the command created or changed.
	ResultID string
	// Replayed is true when the command's idempotency key had been seen:
	// nothing was applied, ReplayedIndex is the original command's index
	// and ResultID its result.
	Replayed      bool
	ReplayedIndex uint64
}

// FSM is the replicated state machine. It is safe for concurrent reads
// while Raft applies.
type FSM struct {
	log *slog.Logger

	mu    sync.RWMutex
	state *State
	// onChange is called (outside the lock) after every applied command and
	// restore, so that dependants such as the NATS user list can follow.
	onChange func()
}

// New returns an empty FSM.
func New(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	return &FSM{log: logger, state: newState()}
}

// OnChange registers fn to be called after each apply or restore.
func (f *FSM) OnChange(fn func()) {
	f.mu.Lock()
	f.onChange = fn
	f.mu.Unlock()
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return &Result{Index: l.Index}
	}
	var cmd palisadev1.FSMCommand
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		f.log.Error("fsm: undecodable log entry skipped", "index", l.Index, "err", err)
		return &Result{Index: l.Index, Err: fmt.Errorf("decode command: %w", err)}
	}
	f.mu.Lock()
	out, err := apply(f.state, l.Index, &cmd)
	if err == nil {
		f.state.lastIndex = l.Index
	}
	fn := f.onChange
	f.mu.Unlock()
	if errors.Is(err, ErrUnknownCmd) && cmd.GetIgnoreIfUnknown() {
		err = nil
	}
	if fn != nil {
		fn()
	}
	return &Result{Index: l.Index, Err: err, ResultID: out.resultID,
		Replayed: out.replayedIndex != 0, ReplayedIndex: out.replayedIndex}
}

// Read runs fn with the current state under a read lock. fn must not keep
// references to the state after it returns; copy what it needs.
func (f *FSM) Read(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}
