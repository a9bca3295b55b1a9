// Package telemetry moves what the agent observes off the host. The
// Forwarder numbers events (and alerts, and command results) into the
// on-disk spool; the Sender publishes each spooled record to JetStream and
// drops it from the spool only once JetStream acknowledged it, with a
// message id that lets the stream discard a resend. Without a controller
// (an air-gapped host, or `--policy` break-glass use) nothing is spooled
// and events that carry a verdict are logged instead.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/agent/spool"
	"github.com/palisade-sec/palisade/internal/backoff"
	"github.com/palisade-sec/palisade/internal/streams"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Batching bounds.
const (
	MaxBatch   = 256
	FlushEvery = 100 * time.Millisecond
)

// Forwarder reads events and spools them.
type Forwarder struct {
	Spool  *spool.Spool // nil: standalone, log verdicts only
	Logger *slog.Logger

	failed atomic.Uint64
}

// Failed counts items that could not be spooled (disk errors).
func (f *Forwarder) Failed() uint64 { return f.failed.Load() }

// Run forwards until events is closed or ctx ends.
func (f *Forwarder) Run(ctx context.Context, events <-chan *palisadev1.Event) {
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	batch := make([]*palisadev1.Event, 0, MaxBatch)
	flush := func() {
		if len(batch) == 0 || f.Spool == nil {
			batch = batch[:0]
			return
		}
		if err := f.AppendEvents(batch); err != nil {
			f.Logger.Error("events not spooled", "count", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case ev, ok := <-events:
			if !ok {
				flush()
				return
			}
			logVerdict(f.Logger, ev)
			batch = append(batch, ev)
			if len(batch) >= MaxBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// AppendEvents numbers and spools a batch of events.
func (f *Forwarder) AppendEvents(evs []*palisadev1.Event) error {
	_, err := f.Spool.Append(streams.KindEvents, func(first uint64) ([]byte, uint32, error) {
		for i, ev := range evs {
			ev.Seq = first + uint64(i)
		}
		data, err := proto.Marshal(&palisadev1.EventBatch{Events: evs})
		return data, uint32(len(evs)), err
	})
	if err != nil {
		f.failed.Add(uint64(len(evs)))
	}
	return err
}

// AppendAlerts spools alerts; each gets the id "<host>-<seq>" unless set.
func (f *Forwarder) AppendAlerts(hostID string, alerts []*palisadev1.Alert) error {
	if f.Spool == nil || len(alerts) == 0 {
		return nil
	}
	_, err := f.Spool.Append(streams.KindAlerts, func(first uint64) ([]byte, uint32, error) {
		for i, a := range alerts {
			if a.Id == "" {
				a.Id = streams.MsgID(hostID, first+uint64(i))
			}
			a.HostId = hostID
		}
		data, err := proto.Marshal(&palisadev1.AlertBatch{Alerts: alerts})
		return data, uint32(len(alerts)), err
	})
	if err != nil {
		f.failed.Add(uint64(len(alerts)))
	}
	return err
}

// AppendResult spools a command result.
func (f *Forwarder) AppendResult(res *palisadev1.CommandResult) error {
	if f.Spool == nil {
		return errors.New("no spool: standalone agents do not take commands")
	}
	_, err := f.Spool.Append(streams.KindResults, func(uint64) ([]byte, uint32, error) {
		data, err := proto.Marshal(res)
		return data, 1, err
	})
	return err
}

// Sender publishes spooled records to JetStream in order.
type Sender struct {
	JS     jetstream.JetStream
	HostID string
	Spool  *spool.Spool
	Logger *slog.Logger
	// AckTimeout bounds one publish (default 5s).
	AckTimeout time.Duration

	sent atomic.Uint64
}

// Sent counts items acknowledged by JetStream.
func (s *Sender) Sent() uint64 { return s.sent.Load() }

// Run sends until ctx ends. A failed publish is retried with backoff; the
// record stays in the spool meanwhile.
func (s *Sender) Run(ctx context.Context) {
	if s.AckTimeout <= 0 {
		s.AckTimeout = 5 * time.Second
	}
	b := &backoff.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		rec, err := s.Spool.Next()
		if err != nil {
			s.Logger.Error("read spool", "err", err)
		}
		if rec == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.Spool.Ready():
			case <-idle.C:
			}
			continue
		}
		if err := s.publish(ctx, rec); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.Logger.Debug("telemetry publish failed; will retry", "seq", rec.FirstSeq, "err", err)
			if !b.Wait(ctx) {
				return
			}
			continue
		}
		b.Reset()
		if err := s.Spool.Ack(rec); err != nil {
			s.Logger.Error("ack spool", "err", err)
		}
		s.sent.Add(uint64(rec.Count))
	}
}

func (s *Sender) publish(ctx context.Context, rec *spool.Record) error {
	msg := nats.NewMsg(subjects.Telemetry(s.HostID, rec.Kind))
	msg.Data = rec.Data
	msg.Header.Set(jetstream.MsgIDHeader, streams.MsgID(s.HostID, rec.FirstSeq))
	msg.Header.Set(streams.HeaderFirstSeq, strconv.FormatUint(rec.FirstSeq, 10))
	msg.Header.Set(streams.HeaderCount, strconv.FormatUint(uint64(rec.Count), 10))
	pctx, cancel := context.WithTimeout(ctx, s.AckTimeout)
	defer cancel()
	if _, err := s.JS.PublishMsg(pctx, msg); err != nil {
		return fmt.Errorf("publish %s seq %d: %w", rec.Kind, rec.FirstSeq, err)
	}
	return nil
}

// logVerdict logs events where the policy acted (or would have, in audit).
func logVerdict(log *slog.Logger, ev *palisadev1.Event) {
	v := ev.Verdict()
	if v == palisadev1.Verdict_VERDICT_ALLOWED || v == palisadev1.Verdict_VERDICT_UNSPECIFIED {
		return
	}
	p := ev.GetProcess()
	attrs := []any{"verdict", v.String(), "pid", p.GetPid(), "exe", p.GetExePath(), "uid", p.GetUid()}
	switch k := ev.GetKind().(type) {
	case *palisadev1.Event_Exec:
		attrs = append(attrs, "kind", "exec", "filename", k.Exec.GetFilename())
	case *palisadev1.Event_FileOpen:
		attrs = append(attrs, "kind", "file_open", "path", k.FileOpen.GetPath(), "rule", k.FileOpen.GetRule(), "honeytoken", k.FileOpen.GetHoneytoken())
	case *palisadev1.Event_Connect:
		attrs = append(attrs, "kind", "connect", "dst", fmt.Sprintf("%s:%d", k.Connect.GetDstAddr(), k.Connect.GetDstPort()), "reason", k.Connect.GetReason())
	}
	log.Warn("policy verdict", attrs...)
}
