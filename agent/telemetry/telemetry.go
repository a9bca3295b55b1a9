// Package telemetry moves the sensors' events off the host: it numbers
// them, groups them into batches and publishes each batch on the host's
// events subject. Without a controller (an air-gapped host, or
// `--policy` break-glass use) events that carry a verdict are logged
// instead, so enforcement stays visible.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Batching bounds.
const (
	MaxBatch   = 256
	FlushEvery = 100 * time.Millisecond
)

// Forwarder reads events and sends them on.
type Forwarder struct {
	HostID string
	Conn   *nats.Conn // nil: standalone, log verdicts only
	Logger *slog.Logger

	seq       atomic.Uint64
	published atomic.Uint64
	failed    atomic.Uint64
}

// Counters reports how many events were published and how many could not
// be.
func (f *Forwarder) Counters() (published, failed uint64) {
	return f.published.Load(), f.failed.Load()
}

// Run forwards until events is closed or ctx ends.
func (f *Forwarder) Run(ctx context.Context, events <-chan *palisadev1.Event) {
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	batch := make([]*palisadev1.Event, 0, MaxBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := f.publish(batch); err != nil {
			f.failed.Add(uint64(len(batch)))
			f.Logger.Warn("events not published", "count", len(batch), "err", err)
		} else {
			f.published.Add(uint64(len(batch)))
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
			ev.HostId = f.HostID
			ev.Seq = f.seq.Add(1)
			logVerdict(f.Logger, ev)
			if f.Conn == nil {
				continue
			}
			batch = append(batch, ev)
			if len(batch) >= MaxBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

func (f *Forwarder) publish(batch []*palisadev1.Event) error {
	data, err := proto.Marshal(&palisadev1.EventBatch{Events: batch})
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	if err := f.Conn.Publish(subjects.Events(f.HostID), data); err != nil {
		return fmt.Errorf("publish batch: %w", err)
	}
	return nil
}

// Verdict returns an event's verdict (ALLOWED for kinds without one).
func Verdict(ev *palisadev1.Event) palisadev1.Verdict {
	switch k := ev.GetKind().(type) {
	case *palisadev1.Event_Exec:
		return k.Exec.GetVerdict()
	case *palisadev1.Event_FileOpen:
		return k.FileOpen.GetVerdict()
	case *palisadev1.Event_Connect:
		return k.Connect.GetVerdict()
	}
	return palisadev1.Verdict_VERDICT_ALLOWED
}

// logVerdict logs events where the policy acted (or would have, in audit).
func logVerdict(log *slog.Logger, ev *palisadev1.Event) {
	v := Verdict(ev)
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
