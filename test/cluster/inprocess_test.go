// Package cluster tests the controller as a 3-node Raft cluster: in this
// process (controllertest.Cluster) and as separate processes.
package cluster

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

const waitLong = 60 * time.Second

func TestInProcess_ThreeNodes_WritesThroughAnyNode(t *testing.T) {
	c := controllertest.Cluster(t, 3)
	ctx := context.Background()
	tok := c.AdminToken()
	for i := range 3 {
		cl := c.Client(i, tok)
		var out apiv1.IOC
		if err := cl.Do(ctx, http.MethodPost, "/api/v1/iocs", nil, apiv1.AddIOCRequest{Type: "ip", Value: "192.0.2." + string(rune('1'+i))}, &out); err != nil {
			t.Fatalf("write through node %d: %v", i, err)
		}
	}
	var st apiv1.Cluster
	if err := c.Client(1, tok).Do(ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster: %+v", st)
	if len(st.Nodes) != 3 || st.Leader == "" {
		t.Fatalf("cluster = %+v", st)
	}
	for _, n := range st.Nodes {
		if n.State == "unreachable" || !n.Voter {
			t.Errorf("node %+v", n)
		}
	}
	// Consistent reads on a follower see every write.
	f := (c.Leader() + 1) % 3
	var l apiv1.IOCList
	if err := c.Client(f, tok).Do(ctx, http.MethodGet, "/api/v1/iocs", map[string][]string{"consistent": {"true"}}, nil, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.IOCs) != 3 {
		t.Fatalf("consistent read on a follower: %d IOCs, want 3", len(l.IOCs))
	}
}
