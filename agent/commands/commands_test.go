package commands

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/internal/cmdsign"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// recorder is an Actions that records calls (the kernel side is tested in
// the e2e tests).
type recorder struct {
	calls []string
	fail  error
}

func (r *recorder) Quarantine(reason string) error {
	r.calls = append(r.calls, "quarantine:"+reason)
	return r.fail
}
func (r *recorder) Release(reason string) error {
	r.calls = append(r.calls, "release:"+reason)
	return r.fail
}
func (r *recorder) Kill(pid uint32, _ time.Time, tree bool) error {
	r.calls = append(r.calls, "kill")
	return r.fail
}
func (r *recorder) Block(cidr string, _ time.Time) error {
	r.calls = append(r.calls, "block:"+cidr)
	return r.fail
}
func (r *recorder) Hunt(hunt.Key) (string, error) {
	r.calls = append(r.calls, "hunt")
	return "found 0", r.fail
}

var (
	seed = bytes.Repeat([]byte{3}, 32)
	now  = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

func signed(t *testing.T, id, host string, exp time.Time) []byte {
	t.Helper()
	b, err := cmdsign.Sign(seed, &palisadev1.Command{CommandId: id, HostId: host, ActionId: "a-" + id,
		ExpiresAt: timestamppb.New(exp), Kind: &palisadev1.Command_Quarantine{Quarantine: &palisadev1.QuarantineCommand{Reason: id}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newExec(t *testing.T, dir string, a Actions) *Executor {
	return &Executor{HostID: "h1", SigningKey: ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), StateDir: dir,
		Actions: a, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
}

func TestExecutor_VerifiesExecutesOnceAndAnswers(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	e := newExec(t, dir, rec)

	res, err := e.Handle(signed(t, "c1", "h1", now.Add(time.Minute)))
	if err != nil || !res.GetOk() || res.GetActionId() != "a-c1" || res.GetCommandId() != "c1" {
		t.Fatalf("first: %v %v", res, err)
	}
	// A replay, even after a restart, is answered but not executed again.
	e2 := newExec(t, dir, rec)
	res2, err := e2.Handle(signed(t, "c1", "h1", now.Add(time.Minute)))
	if err != nil || !res2.GetOk() {
		t.Fatalf("replay: %v %v", res2, err)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("calls = %v, want one execution", rec.calls)
	}
	// Expired: answered as failed, not executed.
	res3, err := e.Handle(signed(t, "c2", "h1", now))
	if err != nil || res3.GetOk() || res3.GetError() == "" {
		t.Fatalf("expired: %v %v", res3, err)
	}
	// Another host's command or a forged one: not answered at all.
	if res, err := e.Handle(signed(t, "c3", "h2", now.Add(time.Minute))); res != nil || !errors.Is(err, cmdsign.ErrWrongHost) {
		t.Fatalf("other host: %v %v", res, err)
	}
	forged := signed(t, "c4", "h1", now.Add(time.Minute))
	forged[len(forged)-1] ^= 0xff
	if res, err := e.Handle(forged); res != nil || err == nil {
		t.Fatalf("forged: %v %v", res, err)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("calls = %v: refused commands executed", rec.calls)
	}
	// A failing action is reported as failed.
	rec.fail = errors.New("no sensor")
	res5, _ := e.Handle(signed(t, "c5", "h1", now.Add(time.Minute)))
	if res5.GetOk() || res5.GetError() != "no sensor" {
		t.Fatalf("failed action: %v", res5)
	}
}
