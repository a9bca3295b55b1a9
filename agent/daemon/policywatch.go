package daemon

import (
	"context"
	"crypto/ed25519"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/agent/policywatch"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// watchPolicy follows the fleet policy in the KV bucket and applies each
// new version until ctx ends.
func (a *Agent) watchPolicy(ctx context.Context, js jetstream.JetStream) {
	w := &policywatch.Watcher{
		JS: js, SigningKey: ed25519.PublicKey(a.id.SigningPublicKey),
		Apply: a.applyRemotePolicy, Logger: a.log,
	}
	w.Run(ctx)
}

// applyRemotePolicy applies a verified, valid bundle.
func (a *Agent) applyRemotePolicy(b *palisadev1.PolicyBundle) error {
	a.policyMu.Lock()
	defer a.policyMu.Unlock()
	if cur := a.policy.current(); cur != nil && cur.GetVersion() == b.GetVersion() && cur.GetRevision() == b.GetRevision() && cur.GetVersion() != 0 {
		return nil
	}
	if a.cfg.PolicyFile != "" {
		a.log.Warn("local --policy in force: controller policy not applied", "version", b.GetVersion())
		return nil
	}
	if err := a.applyBundle(b); err != nil {
		return err
	}
	a.log.Info("controller policy applied", "version", b.GetVersion(), "name", b.GetName())
	return nil
}
