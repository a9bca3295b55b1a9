package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/agent/natsconn"
	"github.com/palisade-sec/palisade/agent/spool"
	"github.com/palisade-sec/palisade/agent/telemetry"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/controllertest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// seqLog records how often each (host, seq) reached the leader's ingest.
type seqLog struct {
	mu   sync.Mutex
	seen map[string]map[uint64]int
}

func (l *seqLog) observe(host string, evs []*palisadev1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[host] == nil {
		l.seen[host] = map[uint64]int{}
	}
	for _, ev := range evs {
		l.seen[host][ev.GetSeq()]++
	}
}

func (l *seqLog) count(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen[host])
}

// TestTelemetry_ExactlyOnceAcrossControllerOutages streams events from a
// real agent pipeline (spool → JetStream) while the controller, and with
// it the embedded NATS server, goes down and comes back five times; every
// sequence number must be ingested exactly once.
func TestTelemetry_ExactlyOnceAcrossControllerOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test is long")
	}
	log := &seqLog{seen: map[string]map[uint64]int{}}
	cfg := controllertest.Config(t)
	cfg.APIAddr = controllertest.FreeAddr(t)
	cfg.NATSListen = controllertest.FreeAddr(t)
	cfg.OnIngestEvents = log.observe
	c, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close() }()

	// A real agent identity and telemetry pipeline, fed by the test.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	id, err := enroll.Ensure(ctx, enroll.Config{StateDir: state, ControllerURL: c.APIURL(),
		Token: newToken(t, controllertest.AdminClient(t, c), ""), Host: hostinfo.Read(), Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Connect(id, controllertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	fwd := &telemetry.Forwarder{Spool: sp, Logger: controllertest.Logger()}
	snd := &telemetry.Sender{JS: js, HostID: id.HostID, Spool: sp, Logger: controllertest.Logger(), AckTimeout: time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); snd.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	// A steady stream: 20 events every 10ms until the outages are over.
	var total uint64
	stopProducing := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopProducing:
				return
			case <-tk.C:
			}
			batch := make([]*palisadev1.Event, 20)
			for i := range batch {
				batch[i] = &palisadev1.Event{Kind: &palisadev1.Event_Exit{Exit: &palisadev1.ExitEvent{ExitCode: int32(i)}}}
			}
			if err := fwd.AppendEvents(batch); err != nil {
				t.Errorf("spool: %v", err)
				return
			}
			total += uint64(len(batch))
		}
	}()

	for outage := 1; outage <= 5; outage++ {
		before := log.count(id.HostID)
		controllertest.Eventually(t, waitLong, fmt.Sprintf("progress before outage %d", outage), func() bool {
			return log.count(id.HostID) > before+100
		})
		if err := c.Close(); err != nil {
			t.Fatalf("outage %d: close: %v", outage, err)
		}
		time.Sleep(300 * time.Millisecond) // the agent keeps spooling meanwhile
		if c, err = server.Start(context.Background(), cfg); err != nil {
			t.Fatalf("outage %d: restart: %v", outage, err)
		}
	}
	close(stopProducing)
	<-produced

	deadline := time.Now().Add(2 * waitLong)
	for uint64(log.count(id.HostID)) < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := uint64(log.count(id.HostID)); got < total {
		log.mu.Lock()
		var missing []uint64
		for seq := uint64(1); seq <= total && len(missing) < 20; seq++ {
			if log.seen[id.HostID][seq] == 0 {
				missing = append(missing, seq)
			}
		}
		log.mu.Unlock()
		t.Fatalf("%d of %d events ingested; first missing: %v; spool pending %d", got, total, missing, sp.Pending())
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for seq := uint64(1); seq <= total; seq++ {
		if n := log.seen[id.HostID][seq]; n != 1 {
			t.Fatalf("seq %d ingested %d times, want exactly once (of %d)", seq, n, total)
		}
	}
	if got := uint64(len(log.seen[id.HostID])); got != total {
		t.Fatalf("%d distinct sequence numbers ingested, %d produced", got, total)
	}
	if _, lost := sp.Stats(); lost != 0 {
		t.Fatalf("spool lost %d items", lost)
	}
	t.Logf("%d events across 5 controller outages, each ingested exactly once", total)
}
