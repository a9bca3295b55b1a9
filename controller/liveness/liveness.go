// Package liveness tracks, in memory, when each host last sent a heartbeat
// and what it said. Liveness is not replicated: every controller node
// subscribes to heartbeats itself, so any node can answer "is it online".
// A host is offline once three of its heartbeat intervals pass in silence.
package liveness

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/internal/natsutil"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// MissedIntervals is how many heartbeat intervals may pass before a host
// counts as offline.
const MissedIntervals = 3

// DefaultInterval is assumed when a heartbeat does not state its interval.
const DefaultInterval = 10 * time.Second

// Status is one host's liveness.
type Status struct {
	Online    bool
	LastSeen  time.Time
	Heartbeat *palisadev1.Heartbeat // the latest, nil if never seen
}

type entry struct {
	seen     time.Time
	interval time.Duration
	hb       *palisadev1.Heartbeat
}

// Tracker holds the last heartbeat of every host.
type Tracker struct {
	now func() time.Time
	mu  sync.RWMutex
	m   map[string]entry

	received prometheus.Counter
	rejected prometheus.Counter
}

// NewTracker returns an empty tracker; now may be nil (time.Now).
func NewTracker(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{
		now: now,
		m:   map[string]entry{},
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_heartbeats_received_total",
			Help: "Heartbeats accepted from agents.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_heartbeats_rejected_total",
			Help: "Heartbeats dropped: undecodable, or from an unknown or mismatched host.",
		}),
	}
}

// Observe records a heartbeat received now.
func (t *Tracker) Observe(hb *palisadev1.Heartbeat) {
	iv := time.Duration(hb.GetIntervalMs()) * time.Millisecond
	if iv <= 0 {
		iv = DefaultInterval
	}
	t.mu.Lock()
	t.m[hb.GetHostId()] = entry{seen: t.now(), interval: iv, hb: hb}
	t.mu.Unlock()
	t.received.Inc()
}

// Status returns a host's liveness.
func (t *Tracker) Status(hostID string) Status {
	t.mu.RLock()
	e, ok := t.m[hostID]
	t.mu.RUnlock()
	if !ok {
		return Status{}
	}
	return Status{
		Online:    t.now().Sub(e.seen) < MissedIntervals*e.interval,
		LastSeen:  e.seen,
		Heartbeat: e.hb,
	}
}

// Online counts online hosts.
func (t *Tracker) Online() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	now, n := t.now(), 0
	for _, e := range t.m {
		if now.Sub(e.seen) < MissedIntervals*e.interval {
			n++
		}
	}
	return n
}

// Collectors returns the tracker's metrics for registration.
func (t *Tracker) Collectors() []prometheus.Collector {
	return []prometheus.Collector{t.received, t.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "palisade_controller_hosts_online",
			Help: "Hosts whose last heartbeat is within three intervals.",
		}, func() float64 { return float64(t.Online()) }),
	}
}

// Subscribe feeds the tracker from NATS until ctx ends. known reports
// whether a host id is enrolled; heartbeats from unknown hosts, and those
// whose payload names another host than the subject, are dropped.
func (t *Tracker) Subscribe(ctx context.Context, nc *nats.Conn, known func(hostID string) bool, log *slog.Logger) error {
	return natsutil.SubscribeHosts(ctx, nc, subjects.AllHeartbeats, known, func(id string, hb *palisadev1.Heartbeat) {
		if hb.GetHostId() != id {
			t.rejected.Inc()
			log.Warn("heartbeat rejected", "subject_host", id, "payload_host", hb.GetHostId())
			return
		}
		t.Observe(hb)
	}, func(id string, err error) {
		t.rejected.Inc()
		log.Warn("heartbeat rejected", "host", id, "err", err)
	})
}
