// Package heartbeat publishes an agent's periodic self-report over NATS.
package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// DefaultInterval is the heartbeat period unless configured.
const DefaultInterval = 10 * time.Second

// Publisher sends a heartbeat at once and then every Interval.
type Publisher struct {
	Conn     *nats.Conn
	HostID   string
	Interval time.Duration
	// Build fills the heartbeat's changing fields (features, policy,
	// quarantine, counters). It may be nil.
	Build  func(hb *palisadev1.Heartbeat)
	Static *palisadev1.Heartbeat // hostname, os, kernel, version...
	Logger *slog.Logger
}

// Run publishes until ctx ends. Publishing while NATS is disconnected is
// buffered by the client; a heartbeat lost then is harmless.
func (p *Publisher) Run(ctx context.Context) error {
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		if err := p.publish(); err != nil {
			p.Logger.Warn("heartbeat not sent", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Publisher) publish() error {
	hb := proto.CloneOf(p.Static)
	if hb == nil {
		hb = &palisadev1.Heartbeat{}
	}
	hb.HostId = p.HostID
	hb.Time = timestamppb.Now()
	hb.IntervalMs = uint32(p.Interval / time.Millisecond)
	if p.Build != nil {
		p.Build(hb)
	}
	data, err := proto.Marshal(hb)
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	if err := p.Conn.Publish(subjects.Heartbeat(p.HostID), data); err != nil {
		return fmt.Errorf("publish heartbeat: %w", err)
	}
	return nil
}
