package cluster

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// withNATSCluster gives every node a NATS route listener; routes come
// from the node records in the replicated state.
func withNATSCluster(t *testing.T) controllertest.ClusterOption {
	return func(i int, cfg *server.Config) { cfg.NATSClusterListen = controllertest.FreeAddr(t) }
}

func TestInProcess_EmbeddedNATSFormsOneCluster(t *testing.T) {
	c := controllertest.Cluster(t, 3, withNATSCluster(t))
	// Every node's controller connection sees a message published
	// through another node's server.
	controllertest.Eventually(t, waitLong, "NATS routes between all nodes", func() bool {
		for i := range 3 {
			if c.Node(i).NATSRoutes() < 2 {
				return false
			}
		}
		return true
	})
	got := make(chan string, 3)
	for i := range 3 {
		sub, err := c.Node(i).NATSConn().Subscribe("palisade.v1.test.cluster", func(m *nats.Msg) { got <- string(m.Data) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := c.Node(i).NATSConn().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, waitLong, "message on every node", func() bool {
		_ = c.Node(0).NATSConn().Publish("palisade.v1.test.cluster", []byte("hi"))
		return len(got) == 3
	})
}

func TestInProcess_EmbeddedNATSClusterHasJetStream(t *testing.T) {
	c := controllertest.Cluster(t, 3, withNATSCluster(t))
	controllertest.Eventually(t, waitLong, "clustered JetStream current on every node", func() bool {
		for i := range 3 {
			if !c.Node(i).NATSJetStreamReady() {
				return false
			}
		}
		return true
	})
}
