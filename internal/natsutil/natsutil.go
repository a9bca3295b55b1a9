// Package natsutil holds small NATS helpers shared by controller parts.
package natsutil

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// SubscribeUntil subscribes handler to subject and blocks until ctx ends,
// then unsubscribes.
func SubscribeUntil(ctx context.Context, nc *nats.Conn, subject string, handler nats.MsgHandler) error {
	sub, err := nc.Subscribe(subject, handler)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	<-ctx.Done()
	if err := sub.Unsubscribe(); err != nil && nc.IsConnected() {
		return fmt.Errorf("unsubscribe %s: %w", subject, err)
	}
	return nil
}
