package daemon

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/internal/cmdsign"
	"github.com/palisade-sec/palisade/internal/policy"
	"github.com/palisade-sec/palisade/internal/streams"
)

// watchPolicy follows the fleet policy in the KV bucket and applies each
// new version until ctx ends.
func (a *Agent) watchPolicy(ctx context.Context, js jetstream.JetStream) {
	for ctx.Err() == nil {
		if err := a.watchPolicyOnce(ctx, js); err != nil && ctx.Err() == nil {
			a.log.Debug("policy watch interrupted; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (a *Agent) watchPolicyOnce(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, streams.PolicyBucket)
	if err != nil {
		return fmt.Errorf("policy bucket: %w", err)
	}
	w, err := kv.Watch(ctx, streams.PolicyKey)
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("policy watch closed")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if err := a.applyRemotePolicy(e.Value()); err != nil {
				a.log.Error("controller policy refused; the previous policy stays in force", "err", err)
			}
		}
	}
}

// applyRemotePolicy verifies, validates and applies a signed bundle.
func (a *Agent) applyRemotePolicy(data []byte) error {
	b, err := cmdsign.VerifyBundle(ed25519.PublicKey(a.id.SigningPublicKey), data)
	if err != nil {
		return err
	}
	if err := policy.ValidateBundle(b); err != nil {
		return fmt.Errorf("policy v%d: %w", b.GetVersion(), err)
	}
	a.policyMu.Lock()
	defer a.policyMu.Unlock()
	if cur := a.policy.version(); cur == b.GetVersion() && cur != 0 {
		return nil
	}
	if a.cfg.PolicyFile != "" {
		a.log.Warn("local --policy in force: controller policy not applied", "version", b.GetVersion())
		return nil
	}
	if a.sensor != nil {
		if err := a.sensor.ApplyBundle(b); err != nil {
			return fmt.Errorf("apply policy v%d: %w", b.GetVersion(), err)
		}
	}
	if err := a.policy.applied(b); err != nil {
		a.log.Error("policy applied but not kept on disk", "err", err)
	}
	if err := a.acts.reassert(); err != nil {
		return err
	}
	a.log.Info("controller policy applied", "version", b.GetVersion(), "name", b.GetName())
	return nil
}
