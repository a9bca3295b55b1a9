// Package policywatch follows the fleet policy an agent receives through
// the JetStream KV bucket PALISADE_POLICY (key "fleet"): every new value is
// verified against the controller's signing key pinned at enrolment,
// validated, and handed to the caller's Apply. A bundle that fails either
// check is refused and the policy in force stays. The agent daemon applies
// bundles to its kernel sensors; the fleet simulator only records the
// version, through the same code.
package policywatch

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/internal/backoff"
	"github.com/palisade-sec/palisade/internal/cmdsign"
	"github.com/palisade-sec/palisade/internal/policy"
	"github.com/palisade-sec/palisade/internal/streams"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Watcher watches the policy bucket.
type Watcher struct {
	JS         jetstream.JetStream
	SigningKey ed25519.PublicKey
	// Apply receives each verified, valid bundle, in order. Its error is
	// logged; the watch goes on.
	Apply  func(*palisadev1.PolicyBundle) error
	Logger *slog.Logger
	// RetryEvery is the first pause before re-watching after the bucket
	// was unavailable (default 1s); pauses grow, jittered, to 30s.
	RetryEvery time.Duration
	// ResyncEvery is how often the key is read again, as a backstop for
	// updates missed while disconnected (default 1m).
	ResyncEvery time.Duration
}

// Verify checks a bundle's signature against key and validates it.
func Verify(key ed25519.PublicKey, data []byte) (*palisadev1.PolicyBundle, error) {
	b, err := cmdsign.VerifyBundle(key, data)
	if err != nil {
		return nil, err
	}
	if err := policy.ValidateBundle(b); err != nil {
		return nil, fmt.Errorf("policy v%d: %w", b.GetVersion(), err)
	}
	return b, nil
}

// Run follows the bucket until ctx ends, re-watching after interruptions.
func (w *Watcher) Run(ctx context.Context) {
	retry := w.RetryEvery
	if retry <= 0 {
		retry = time.Second
	}
	// A fleet that lost its server retries with growing, jittered delays,
	// not every second in lock step.
	b := &backoff.Backoff{Min: retry, Max: max(30*time.Second, retry)}
	for ctx.Err() == nil {
		start := time.Now()
		if err := w.once(ctx); err != nil && ctx.Err() == nil {
			if time.Since(start) > time.Minute {
				b.Reset() // the watch had been running fine
			}
			w.Logger.Debug("policy watch interrupted; retrying", "err", err)
			b.Wait(ctx)
		}
	}
}

// once follows the bucket's key without a JetStream consumer: a core
// subscription to the key's subject sees every put as it is stored, and a
// direct get at start and every ResyncEvery catches anything missed while
// disconnected. (A KV watch is an ordered consumer per agent; at 10,000
// agents that is 10,000 consumers for the server to create and feed.)
func (w *Watcher) once(ctx context.Context) error {
	kv, err := w.JS.KeyValue(ctx, streams.PolicyBucket)
	if err != nil {
		return fmt.Errorf("policy bucket: %w", err)
	}
	latest := make(chan []byte, 1)
	sub, err := w.JS.Conn().Subscribe(streams.PolicySubject(), func(m *nats.Msg) {
		select {
		case <-latest: // keep only the newest value
		default:
		}
		latest <- m.Data
	})
	if err != nil {
		return fmt.Errorf("subscribe policy: %w", err)
	}
	defer sub.Unsubscribe()
	apply := func(data []byte) {
		b, err := Verify(w.SigningKey, data)
		if err == nil {
			err = w.Apply(b)
		}
		if err != nil {
			w.Logger.Error("controller policy refused; the previous policy stays in force", "err", err)
		}
	}
	get := func() error {
		e, err := kv.Get(ctx, streams.PolicyKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil // no policy published yet
		}
		if err != nil {
			return fmt.Errorf("get policy: %w", err)
		}
		apply(e.Value())
		return nil
	}
	if err := get(); err != nil {
		return err
	}
	resync := w.ResyncEvery
	if resync <= 0 {
		resync = time.Minute
	}
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case data := <-latest:
			apply(data)
		case <-t.C:
			if err := get(); err != nil {
				return err
			}
		}
	}
}
