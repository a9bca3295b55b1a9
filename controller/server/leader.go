package server

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/controller/dispatch"
	"github.com/palisade-sec/palisade/controller/fleet"
	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/ingest"
	"github.com/palisade-sec/palisade/controller/respond"
	"github.com/palisade-sec/palisade/internal/cmdsign"
	"github.com/palisade-sec/palisade/internal/streams"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// leaderWork sets up JetStream and runs the leader-only consumers until
// ctx ends.
func (c *Controller) leaderWork(ctx context.Context) {
	c.log.Info("leader work starting")
	js, err := jetstream.New(c.nc)
	if err != nil {
		c.log.Error("jetstream", "err", err)
		return
	}
	for {
		err := streams.Ensure(ctx, js, streams.Options{Replicas: c.cfg.StreamReplicas})
		if err == nil {
			break
		}
		c.log.Warn("ensure streams; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	var wg sync.WaitGroup
	run := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	run(func() { c.ensureAgentConsumers(ctx, js) })
	changed := make(chan struct{}, 1)
	run(func() { c.watchFSM(ctx, changed) })
	d := &dispatch.Dispatcher{Store: c.store, JS: js, Log: c.log, Changed: changed}
	resp := &respond.Responder{Store: c.store, Log: c.log}
	run(func() { d.Run(ctx) })
	run(func() { c.publishPolicy(ctx, js) })
	in := ingest.New(js, ingest.Handlers{
		Known:   c.knownHost,
		Events:  c.onEvents,
		Results: func(host string, res *palisadev1.CommandResult) error { return d.Result(ctx, host, res) },
		Alerts:  func(host string, alerts []*palisadev1.Alert) error { return resp.HandleAlerts(ctx, host, alerts) },
	}, c.log)
	c.setIngester(in)
	run(func() {
		for ctx.Err() == nil {
			if err := in.Run(ctx); err != nil {
				c.log.Warn("ingest stopped; restarting", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	})
	wg.Wait()
}

// fsmPoll is how often the leader looks for new FSM entries (new actions
// to dispatch). Polling the applied index is cheap and keeps FSM.OnChange
// free for the NATS user sync.
const fsmPoll = 10 * time.Millisecond

// watchFSM signals changed whenever the FSM applied something new.
func (c *Controller) watchFSM(ctx context.Context, changed chan<- struct{}) {
	var last uint64
	t := time.NewTicker(fsmPoll)
	defer t.Stop()
	for {
		var idx uint64
		c.store.FSM().Read(func(s *fsm.State) { idx = s.LastIndex() })
		if idx != last {
			last = idx
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// policyPoll is how often the leader checks for a new current policy.
const policyPoll = 200 * time.Millisecond

// publishPolicy keeps the signed fleet bundle — the current policy with
// IOCs and leaked keys merged in — in the KV bucket agents watch.
func (c *Controller) publishPolicy(ctx context.Context, js jetstream.JetStream) {
	var (
		kv        jetstream.KeyValue
		published = "-"
	)
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	for {
		var (
			b    *palisadev1.PolicyBundle
			seed []byte
		)
		c.store.FSM().Read(func(s *fsm.State) {
			b = fleet.Bundle(s.CurrentPolicy(), s.IOCs(), s.LeakedCredentials(), time.Now())
			seed = s.Cluster().GetSigningSeed()
		})
		if id := fleet.Describe(b); id != published && (b.GetVersion() > 0 || b.GetRevision() > 0) {
			if err := c.putPolicy(ctx, js, &kv, seed, b); err != nil {
				c.log.Warn("policy not published; retrying", "bundle", id, "err", err)
			} else {
				published = id
				c.log.Info("policy published to agents", "bundle", id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) putPolicy(ctx context.Context, js jetstream.JetStream, kv *jetstream.KeyValue, seed []byte, b *palisadev1.PolicyBundle) error {
	if *kv == nil {
		k, err := js.KeyValue(ctx, streams.PolicyBucket)
		if err != nil {
			return err
		}
		*kv = k
	}
	data, err := cmdsign.SignBundle(seed, b)
	if err != nil {
		return err
	}
	// Skip the write when the bucket already holds exactly this bundle
	// (a new leader, or a restart).
	if e, err := (*kv).Get(ctx, streams.PolicyKey); err == nil && bytes.Equal(e.Value(), data) {
		return nil
	}
	_, err = (*kv).Put(ctx, streams.PolicyKey, data)
	return err
}

// onEvents hands ingested events to the observer (tests, benchmarks).
func (c *Controller) onEvents(hostID string, evs []*palisadev1.Event) error {
	if c.cfg.OnIngestEvents != nil {
		c.cfg.OnIngestEvents(hostID, evs)
	}
	return nil
}

func (c *Controller) setIngester(in *ingest.Ingester) {
	c.mu.Lock()
	c.ingester = in
	c.mu.Unlock()
}

// Ingester is the leader's telemetry ingester (nil on followers and before
// leader work starts).
func (c *Controller) Ingester() *ingest.Ingester {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ingester
}

// ensureAgentConsumers gives every enrolled host its command consumer, and
// keeps doing so as hosts enrol.
func (c *Controller) ensureAgentConsumers(ctx context.Context, js jetstream.JetStream) {
	done := map[string]bool{}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		var ids []string
		c.store.FSM().Read(func(s *fsm.State) {
			for _, h := range s.Hosts() {
				if !done[h.GetId()] {
					ids = append(ids, h.GetId())
				}
			}
		})
		// Many hosts enrol at once when a fleet is rolled out: create their
		// consumers a few dozen at a time, not one after another.
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		sem := make(chan struct{}, 32)
		for _, id := range ids {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := streams.EnsureAgentConsumer(ctx, js, id); err != nil {
					c.log.Warn("command consumer not created; retrying", "host", id, "err", err)
					return
				}
				mu.Lock()
				done[id] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
