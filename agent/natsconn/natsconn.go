// Package natsconn opens an agent's NATS connection under its own nkey
// (with its user JWT when it has one), with its private reply inbox,
// reconnecting forever.
package natsconn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/internal/devca"
	"github.com/palisade-sec/palisade/internal/subjects"
)

// Connect connects as the agent of id. The connection is returned even
// while no server is reachable (it keeps retrying in the background).
func Connect(id *identity.Identity, log *slog.Logger) (*nats.Conn, error) {
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
	sign := func(nonce []byte) ([]byte, error) {
		k, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, err
		}
		defer k.Wipe()
		return k.Sign(nonce)
	}
	// With a user JWT (external NATS in operator mode) the server learns
	// the agent's permissions from the JWT and checks the nonce signature
	// against the JWT's subject; otherwise the nkey alone identifies it.
	auth := nats.Nkey(pub, sign)
	if userJWT := id.NATSUserJWT; userJWT != "" {
		auth = nats.UserJWT(func() (string, error) { return userJWT, nil }, sign)
	}
	opts := []nats.Option{nats.Name("palisade-agent " + id.HostID), auth}
	if len(id.CAPEM) > 0 {
		pool, err := devca.Pool(id.CAPEM)
		if err != nil {
			return nil, fmt.Errorf("identity CA: %w", err)
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	nc, err := nats.Connect(strings.Join(id.NATSURLs, ","), append(opts,
		nats.CustomInboxPrefix(subjects.Inbox(id.HostID)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		// A restarted server may not know this agent for a moment: keep
		// trying instead of giving up after repeated auth errors.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats error", "err", err) }),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	return nc, nil
}
