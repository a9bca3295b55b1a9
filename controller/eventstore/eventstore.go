// Package eventstore keeps each host's most recent events in memory so the
// API can show them (`palisadectl hosts events HOST`). Every controller
// node subscribes to the hosts' event subjects itself, so any node can
// answer. It is a bounded window for operators, not the durable record:
// durable ingestion goes through the JetStream TELEMETRY stream.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/internal/natsutil"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// DefaultPerHost is how many events are kept per host.
const DefaultPerHost = 2000

// Kind filters events by their kind.
type Kind string

// Kinds accepted by List.
const (
	KindAll     Kind = ""
	KindExec    Kind = "exec"
	KindExit    Kind = "exit"
	KindFile    Kind = "file"
	KindConnect Kind = "connect"
)

// ParseKind validates a kind filter.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindAll, KindExec, KindExit, KindFile, KindConnect:
		return k, nil
	}
	return "", fmt.Errorf("kind %q: want exec, exit, file or connect", s)
}

func kindOf(ev *palisadev1.Event) Kind {
	switch ev.GetKind().(type) {
	case *palisadev1.Event_Exec:
		return KindExec
	case *palisadev1.Event_Exit:
		return KindExit
	case *palisadev1.Event_FileOpen:
		return KindFile
	case *palisadev1.Event_Connect:
		return KindConnect
	}
	return KindAll
}

type ring struct {
	buf  []*palisadev1.Event
	next int
	full bool
}

// Store holds a ring of recent events per host.
type Store struct {
	perHost int
	mu      sync.RWMutex
	hosts   map[string]*ring

	received prometheus.Counter
	rejected prometheus.Counter
}

// New returns a store keeping perHost events per host (0: DefaultPerHost).
func New(perHost int) *Store {
	if perHost <= 0 {
		perHost = DefaultPerHost
	}
	return &Store{
		perHost: perHost,
		hosts:   map[string]*ring{},
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_events_received_total", Help: "Events received from agents.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_event_batches_rejected_total", Help: "Event batches dropped: undecodable or from an unknown host.",
		}),
	}
}

// Collectors returns the store's metrics.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.received, s.rejected}
}

// Add appends events for hostID. Each event's host id is forced to hostID:
// the subject, which NATS permissions tie to the sender, is authoritative.
func (s *Store) Add(hostID string, events []*palisadev1.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.hosts[hostID]
	if r == nil {
		r = &ring{buf: make([]*palisadev1.Event, s.perHost)}
		s.hosts[hostID] = r
	}
	for _, ev := range events {
		ev.HostId = hostID
		r.buf[r.next] = ev
		r.next = (r.next + 1) % len(r.buf)
		if r.next == 0 {
			r.full = true
		}
	}
	s.received.Add(float64(len(events)))
}

// List returns up to limit of hostID's most recent events of kind,
// newest first.
func (s *Store) List(hostID string, kind Kind, limit int) []*palisadev1.Event {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.hosts[hostID]
	if r == nil {
		return nil
	}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	var out []*palisadev1.Event
	for i := 1; i <= n && len(out) < limit; i++ {
		ev := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		if kind == KindAll || kindOf(ev) == kind {
			out = append(out, ev)
		}
	}
	return out
}

// Subscribe feeds the store from NATS until ctx ends; batches from hosts
// that known rejects are dropped.
func (s *Store) Subscribe(ctx context.Context, nc *nats.Conn, known func(string) bool, log *slog.Logger) error {
	return natsutil.SubscribeHosts(ctx, nc, subjects.AllEvents, known, func(id string, b *palisadev1.EventBatch) {
		s.Add(id, b.GetEvents())
	}, func(id string, err error) {
		s.rejected.Inc()
		if !errors.Is(err, natsutil.ErrUnknownHost) {
			log.Warn("event batch rejected", "host", id, "err", err)
		}
	})
}
