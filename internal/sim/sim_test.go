package sim_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/sim"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

const wait = 60 * time.Second

// TestFleet_OnlineEventsQuarantine: 20 simulated agents enrol with their
// own tokens, come online, get every event ingested exactly once, and one
// of them executes (and acknowledges) a quarantine; a second fleet on the
// same state dirs reuses the identities instead of enrolling again. Every
// agent applies a policy pushed through the API.
func TestFleet_OnlineEventsQuarantine(t *testing.T) {
	const n, perAgent = 20, 300
	var mu sync.Mutex
	seen := map[string]map[uint64]int{}
	cfg := controllertest.Config(t)
	cfg.OnIngestEvents = func(host string, evs []*palisadev1.Event) {
		mu.Lock()
		defer mu.Unlock()
		if seen[host] == nil {
			seen[host] = map[uint64]int{}
		}
		for _, ev := range evs {
			seen[host][ev.GetSeq()]++
		}
	}
	c := controllertest.Start(t, cfg)
	cl := controllertest.AdminClient(t, c)
	ctx := context.Background()
	state := t.TempDir()
	scfg := sim.Config{
		API: c.APIURL(), AdminToken: controllertest.AdminToken(t, c), StateDir: state,
		HeartbeatInterval: 200 * time.Millisecond, Logger: controllertest.Logger(),
	}
	f, err := sim.Start(ctx, scfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	online := func() int {
		hl, err := cl.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, h := range hl.Hosts {
			if h.Online {
				k++
			}
		}
		return k
	}
	controllertest.Eventually(t, wait, "every simulated agent online", func() bool { return online() == n })

	for _, a := range f.Agents() {
		if err := a.AppendEvents(perAgent); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, wait, "every event ingested", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, m := range seen {
			total += len(m)
		}
		return total == n*perAgent
	})
	mu.Lock()
	for _, a := range f.Agents() {
		m := seen[a.HostID()]
		for s := uint64(1); s <= perAgent; s++ {
			if m[s] != 1 {
				t.Errorf("host %s seq %d ingested %d times", a.HostID(), s, m[s])
			}
		}
	}
	mu.Unlock()

	target := f.Agents()[7]
	var act apiv1.Action
	if err := cl.Do(ctx, http.MethodPost, "/api/v1/hosts/"+target.HostID()+"/quarantine", nil,
		apiv1.QuarantineRequest{Reason: "sim test"}, &act); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, wait, "quarantine acked", func() bool {
		if err := cl.Do(ctx, http.MethodGet, "/api/v1/actions/"+act.ID, nil, nil, &act); err != nil {
			t.Fatal(err)
		}
		if act.State == "failed" || act.State == "expired" {
			t.Fatalf("action %s", act.State)
		}
		return act.State == "acked"
	})
	if !target.Quarantined() {
		t.Fatal("acked but the simulated flag is not set")
	}
	if s := f.Stats(); s.Quarantined != 1 || s.Lost != 0 {
		t.Fatalf("stats %+v", s)
	}
	var pol apiv1.Policy
	if err := cl.Do(ctx, http.MethodPost, "/api/v1/policies", nil, apiv1.ApplyPolicyRequest{
		Name: "sim.yaml", Source: "apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: sim}\nspec:\n  mode: enforce\n  network:\n    deny: [\"203.0.113.0/24\"]\n",
	}, &pol); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, wait, "every agent applied the policy", func() bool {
		for _, a := range f.Agents() {
			if v, _, _ := a.PolicyVersion(); v != pol.Version {
				return false
			}
		}
		return true
	})

	var ids []string
	for _, a := range f.Agents() {
		ids = append(ids, a.HostID())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Same state dirs: no new enrolment.
	f2, err := sim.Start(ctx, scfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	hl, err := cl.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hl.Hosts) != n {
		t.Fatalf("%d hosts after a rerun, want %d (re-enrolled?)", len(hl.Hosts), n)
	}
	for i, a := range f2.Agents() {
		if a.HostID() != ids[i] {
			t.Fatalf("agent %d changed identity", i)
		}
	}
}
