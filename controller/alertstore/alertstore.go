// Package alertstore keeps recent alerts in memory on every controller
// node, by id, so incidents (which record alert ids through Raft) and
// leaked-key blast radii can show what the alerts said. Like eventstore,
// it is a bounded operator window fed from the hosts' alert subjects;
// the TELEMETRY stream holds the durable record.
package alertstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/palisade-sec/palisade/internal/natsutil"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// DefaultMax is how many alerts are kept.
const DefaultMax = 100_000

// Store holds the most recent alerts.
type Store struct {
	max   int
	mu    sync.RWMutex
	byID  map[string]*palisadev1.Alert
	order []string // oldest first (a ring would save the copy; alerts are rare)
}

// New returns a store keeping at most max alerts (0: DefaultMax).
func New(max int) *Store {
	if max <= 0 {
		max = DefaultMax
	}
	return &Store{max: max, byID: map[string]*palisadev1.Alert{}}
}

// Add records alerts of hostID (the subject's host is authoritative).
func (s *Store) Add(hostID string, alerts []*palisadev1.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range alerts {
		a.HostId = hostID
		if a.GetId() == "" {
			continue
		}
		if _, ok := s.byID[a.GetId()]; !ok {
			s.order = append(s.order, a.GetId())
		}
		s.byID[a.GetId()] = a
	}
	for len(s.order) > s.max {
		delete(s.byID, s.order[0])
		s.order = s.order[1:]
	}
}

// Get returns the alerts with the given ids that are still held.
func (s *Store) Get(ids []string) []*palisadev1.Alert {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*palisadev1.Alert
	for _, id := range ids {
		if a, ok := s.byID[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Find returns up to limit alerts matching keep, newest first.
func (s *Store) Find(keep func(*palisadev1.Alert) bool, limit int) []*palisadev1.Alert {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*palisadev1.Alert
	for i := len(s.order) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if a := s.byID[s.order[i]]; keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// Subscribe feeds the store from NATS until ctx ends.
func (s *Store) Subscribe(ctx context.Context, nc *nats.Conn, known func(string) bool, log *slog.Logger) error {
	return natsutil.SubscribeHosts(ctx, nc, subjects.Root+".host.*.alerts", known, func(id string, b *palisadev1.AlertBatch) {
		s.Add(id, b.GetAlerts())
	}, func(id string, err error) {
		if !errors.Is(err, natsutil.ErrUnknownHost) {
			log.Warn("alert batch rejected", "host", id, "err", err)
		}
	})
}
