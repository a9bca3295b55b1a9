// Package ingest is the leader's reader of the TELEMETRY stream. It
// consumes through the durable consumer "controller-ingest", so a new
// leader continues where the old one acknowledged, and it delivers each
// host's items exactly once: the stream drops resends inside its
// duplicate window, and ingest drops any record whose sequence numbers it
// has already passed (a resend after the window, or a redelivery after a
// leader change).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/internal/streams"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Handlers receive what was ingested. A handler that returns an error
// makes the record be redelivered later.
type Handlers struct {
	Events  func(hostID string, evs []*palisadev1.Event) error
	Alerts  func(hostID string, alerts []*palisadev1.Alert) error
	Results func(hostID string, res *palisadev1.CommandResult) error
	// Known reports whether a host is enrolled; records of unknown hosts
	// are acknowledged and dropped.
	Known func(hostID string) bool
}

// Ingester consumes telemetry.
type Ingester struct {
	js  jetstream.JetStream
	h   Handlers
	log *slog.Logger

	mu   sync.Mutex
	prog map[string]*progress
	kv   jetstream.KeyValue

	items      *prometheus.CounterVec
	duplicates prometheus.Counter
	gaps       prometheus.Counter
	rejected   prometheus.Counter
}

// New returns an ingester; Run starts it.
func New(js jetstream.JetStream, h Handlers, log *slog.Logger) *Ingester {
	return &Ingester{
		js: js, h: h, log: log, prog: map[string]*progress{},
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_controller_ingested_total", Help: "Telemetry items ingested by the leader, by kind.",
		}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_ingest_duplicates_total", Help: "Telemetry records dropped as already ingested.",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_ingest_gap_items_total", Help: "Sequence numbers skipped by hosts (items their spool lost).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "palisade_controller_ingest_rejected_total", Help: "Telemetry records dropped: malformed or from unknown hosts.",
		}),
	}
}

// Collectors returns the ingester's metrics.
func (in *Ingester) Collectors() []prometheus.Collector {
	return []prometheus.Collector{in.items, in.duplicates, in.gaps, in.rejected}
}

// Watermark is the sequence number up to which everything from a host
// was ingested.
func (in *Ingester) Watermark(hostID string) uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p := in.prog[hostID]; p != nil {
		return p.Watermark
	}
	return 0
}

// Run consumes until ctx ends.
func (in *Ingester) Run(ctx context.Context) error {
	kv, err := in.js.KeyValue(ctx, streams.IngestBucket)
	if err != nil {
		return fmt.Errorf("ingest progress bucket: %w", err)
	}
	if err := in.loadProgress(ctx, kv); err != nil {
		return err
	}
	in.mu.Lock()
	in.kv = kv
	in.mu.Unlock()
	cons, err := in.js.Consumer(ctx, streams.Telemetry, streams.IngestConsumer)
	if err != nil {
		return fmt.Errorf("ingest consumer: %w", err)
	}
	cc, err := cons.Consume(in.handle, jetstream.PullMaxMessages(512),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if ctx.Err() == nil {
				in.log.Debug("ingest consume", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume telemetry: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	return nil
}

// record is a decoded telemetry message's envelope.
type record struct {
	host, kind      string
	firstSeq, count uint64
}

func parse(m jetstream.Msg) (record, error) {
	var r record
	host, err := subjects.HostFromSubject(m.Subject())
	if err != nil {
		return r, err
	}
	r.host = host
	r.kind = m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
	h := m.Headers()
	if r.firstSeq, err = strconv.ParseUint(h.Get(streams.HeaderFirstSeq), 10, 64); err != nil || r.firstSeq == 0 {
		return r, fmt.Errorf("bad %s header", streams.HeaderFirstSeq)
	}
	if r.count, err = strconv.ParseUint(h.Get(streams.HeaderCount), 10, 32); err != nil || r.count == 0 {
		return r, fmt.Errorf("bad %s header", streams.HeaderCount)
	}
	return r, nil
}

func (in *Ingester) handle(m jetstream.Msg) {
	r, err := parse(m)
	if err != nil || (in.h.Known != nil && !in.h.Known(r.host)) {
		in.rejected.Inc()
		in.log.Warn("telemetry record dropped", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	last := r.firstSeq + r.count - 1
	in.mu.Lock()
	p := in.prog[r.host]
	if p == nil {
		p = &progress{}
		in.prog[r.host] = p
	}
	dup := p.seen(r.firstSeq, last)
	in.mu.Unlock()
	if dup {
		in.duplicates.Inc()
		_ = m.Ack()
		return
	}
	if err := in.deliver(r, m.Data()); errors.Is(err, errUndecodable) {
		in.rejected.Inc()
		in.log.Warn("telemetry record dropped", "host", r.host, "kind", r.kind, "seq", r.firstSeq, "err", err)
		_ = m.Term()
		return
	} else if err != nil {
		in.log.Warn("telemetry record not handled; will be redelivered", "host", r.host, "kind", r.kind, "seq", r.firstSeq, "err", err)
		_ = m.Nak()
		return
	}
	in.mu.Lock()
	skipped := p.add(r.firstSeq, last)
	state := p.encode()
	kv := in.kv
	in.mu.Unlock()
	in.gaps.Add(float64(skipped))
	in.items.WithLabelValues(r.kind).Add(float64(r.count))
	// Progress first, then the acknowledgement, confirmed by the server:
	// a redelivery after either is recognised as a duplicate.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, r.host, state); err != nil {
		in.log.Warn("ingest progress not recorded", "host", r.host, "err", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		in.log.Warn("ingest ack not confirmed", "host", r.host, "seq", r.firstSeq, "err", err)
	}
}

// loadProgress reads every host's last ingested sequence number.
func (in *Ingester) loadProgress(ctx context.Context, kv jetstream.KeyValue) error {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list ingest progress: %w", err)
	}
	loaded := map[string]*progress{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		p, err := decodeProgress(e.Value())
		if err != nil {
			in.log.Warn("ingest progress unreadable; starting afresh for host", "host", k, "err", err)
			continue
		}
		loaded[k] = p
	}
	in.mu.Lock()
	for k, p := range loaded {
		if in.prog[k] == nil || in.prog[k].Watermark < p.Watermark {
			in.prog[k] = p
		}
	}
	in.mu.Unlock()
	return nil
}

var errUndecodable = errors.New("undecodable payload")

func (in *Ingester) deliver(r record, data []byte) error {
	switch r.kind {
	case streams.KindEvents:
		var b palisadev1.EventBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			return fmt.Errorf("%w: %w", errUndecodable, err)
		}
		for _, ev := range b.GetEvents() {
			ev.HostId = r.host
		}
		if in.h.Events != nil {
			return in.h.Events(r.host, b.GetEvents())
		}
	case streams.KindAlerts:
		var b palisadev1.AlertBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			return fmt.Errorf("%w: %w", errUndecodable, err)
		}
		for _, a := range b.GetAlerts() {
			a.HostId = r.host
		}
		if in.h.Alerts != nil {
			return in.h.Alerts(r.host, b.GetAlerts())
		}
	case streams.KindResults:
		var res palisadev1.CommandResult
		if err := proto.Unmarshal(data, &res); err != nil {
			return fmt.Errorf("%w: %w", errUndecodable, err)
		}
		res.HostId = r.host
		if in.h.Results != nil {
			return in.h.Results(r.host, &res)
		}
	}
	return nil
}
