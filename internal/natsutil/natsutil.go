// Package natsutil holds small NATS helpers shared by controller parts.
package natsutil

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/internal/subjects"
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

// SubscribeHosts subscribes to a per-host subject pattern
// (palisade.v1.host.*.<kind>) until ctx ends. Each message's host id is
// taken from its subject (authoritative: NATS permissions tie it to the
// sender); messages from hosts known rejects, and payloads that do not
// decode as M, go to reject (which may be nil); the rest to handle.
func SubscribeHosts[M any, PM interface {
	*M
	proto.Message
}](ctx context.Context, nc *nats.Conn, subject string, known func(string) bool,
	handle func(hostID string, msg PM), reject func(hostID string, err error)) error {
	if reject == nil {
		reject = func(string, error) {}
	}
	return SubscribeUntil(ctx, nc, subject, func(m *nats.Msg) {
		id, err := subjects.HostFromSubject(m.Subject)
		if err != nil {
			reject("", err)
			return
		}
		if !known(id) {
			reject(id, ErrUnknownHost)
			return
		}
		msg := PM(new(M))
		if err := proto.Unmarshal(m.Data, msg); err != nil {
			reject(id, fmt.Errorf("undecodable payload: %w", err))
			return
		}
		handle(id, msg)
	})
}

// ErrUnknownHost is what SubscribeHosts passes to reject for a host known refuses.
var ErrUnknownHost = errors.New("unknown host")
