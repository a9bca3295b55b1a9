package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// enrolHost enrols a fake host (no agent) and returns its id.
func enrolHost(t *testing.T, cl *apiclient.Client) string {
	t.Helper()
	ctx := context.Background()
	tok, err := cl.CreateEnrollToken(ctx, apiv1.CreateEnrollTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	resp, err := cl.Enroll(ctx, apiv1.EnrollRequest{Token: tok.Token, Hostname: "h", NKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	return resp.HostID
}

func addIOC(ctx context.Context, cl *apiclient.Client, i int) error {
	return cl.Do(ctx, http.MethodPost, "/api/v1/iocs", nil,
		apiv1.AddIOCRequest{Type: "ip", Value: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}, nil)
}

func countIOCs(t *testing.T, cl *apiclient.Client, consistent bool) int {
	t.Helper()
	q := map[string][]string{}
	if consistent {
		q["consistent"] = []string{"true"}
	}
	var l apiv1.IOCList
	if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/iocs", q, nil, &l); err != nil {
		t.Fatal(err)
	}
	return len(l.IOCs)
}

func TestFailover_LeaderKilledNewLeaderTakesWrites(t *testing.T) {
	c := controllertest.Cluster(t, 3)
	cl := c.AdminClient()
	ctx := context.Background()
	for i := range 10 {
		if err := addIOC(ctx, cl, i); err != nil {
			t.Fatal(err)
		}
	}
	old := c.Leader()
	c.Stop(old)
	// The client knows every node and retries: it needs nothing else.
	for i := 10; i < 20; i++ {
		if err := addIOC(ctx, cl, i); err != nil {
			t.Fatalf("write after the leader died: %v", err)
		}
	}
	nl := c.Leader()
	if nl == old {
		t.Fatal("the stopped node still leads")
	}
	if n := countIOCs(t, cl, true); n != 20 {
		t.Fatalf("%d IOCs after failover, want 20 (an acknowledged write was lost)", n)
	}
	// The old leader comes back as a follower and catches up.
	c.Start(old)
	fc := c.Client(old, c.AdminToken())
	controllertest.Eventually(t, waitLong, "old leader catches up", func() bool { return countIOCs(t, fc, false) == 20 })
}

func TestSnapshot_RestartedFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := controllertest.Cluster(t, 3, func(i int, cfg *server.Config) {
		cfg.RaftSnapshotThreshold, cfg.RaftTrailingLogs, cfg.RaftSnapshotInterval = 50, 10, 50*time.Millisecond
	})
	cl := c.AdminClient()
	ctx := context.Background()
	f := (c.Leader() + 1) % 3
	c.Stop(f)
	for i := range 300 {
		if err := addIOC(ctx, cl, i); err != nil {
			t.Fatal(err)
		}
	}
	l := c.Leader()
	controllertest.Eventually(t, waitLong, "the leader to compact its log past the stopped follower", func() bool {
		idx, _ := strconv.ParseUint(c.Node(l).Store().Stats()["last_snapshot_index"], 10, 64)
		return idx > 100
	})
	nd := c.Start(f)
	fc := c.Client(f, c.AdminToken())
	controllertest.Eventually(t, waitLong, "restarted follower catches up", func() bool { return countIOCs(t, fc, false) == 300 })
	// It got there through a snapshot: its own latest snapshot is one the
	// leader sent (its log starts after the entries it missed).
	idx, _ := strconv.ParseUint(nd.Store().Stats()["last_snapshot_index"], 10, 64)
	if idx == 0 {
		t.Fatalf("the follower has no snapshot: stats %v", nd.Store().Stats())
	}
}

func TestPartition_MinorityCannotWrite(t *testing.T) {
	c := controllertest.Cluster(t, 3)
	tok := c.AdminToken()
	ctx := context.Background()
	cl := c.AdminClient()
	if err := addIOC(ctx, cl, 1); err != nil {
		t.Fatal(err)
	}
	old := c.Leader()
	c.Node(old).Store().SetIsolated(true)
	// The isolated old leader (the minority side) must not commit a write.
	minority := c.Client(old, tok)
	minority.RetryFor = 0
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := addIOC(wctx, minority, 2)
	cancel()
	if err == nil {
		t.Fatal("a write on the minority side succeeded")
	}
	t.Logf("minority write refused: %v", err)
	// The majority elects a leader and takes writes.
	maj := (old + 1) % 3
	majority := c.Client(maj, tok)
	if err := addIOC(ctx, majority, 3); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	controllertest.Eventually(t, waitLong, "a new leader on the majority side", func() bool {
		for i := range 3 {
			if i != old && c.Node(i).IsLeader() {
				return true
			}
		}
		return false
	})
	// Healing: the old leader rejoins as a follower and has exactly the
	// majority's writes (the refused one never appears).
	c.Node(old).Store().SetIsolated(false)
	oc := c.Client(old, tok)
	controllertest.Eventually(t, waitLong, "healed node converges", func() bool { return countIOCs(t, oc, false) == 2 })
	if n := countIOCs(t, majority, true); n != 2 {
		t.Fatalf("%d IOCs, want 2", n)
	}
}
