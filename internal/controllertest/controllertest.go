// Package controllertest starts real controller nodes for tests: Raft,
// embedded NATS and the API on random loopback ports in t.TempDir(),
// stopped in t.Cleanup.
package controllertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
)

// Logger is the logger tests give to components: quiet unless
// PALISADE_TEST_LOG=1.
func Logger() *slog.Logger {
	if os.Getenv("PALISADE_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago (for components that must keep their address across restarts).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Config returns a single-node bootstrap configuration in a fresh dir.
func Config(t testing.TB) server.Config {
	return server.Config{
		NodeID:     "n1",
		DataDir:    t.TempDir(),
		APIAddr:    "127.0.0.1:0",
		RaftAddr:   FreeAddr(t),
		NATSListen: "127.0.0.1:-1",
		Bootstrap:  true,
		Logger:     Logger(),
	}
}

// Start starts a node with cfg and stops it at cleanup.
func Start(t testing.TB, cfg server.Config) *server.Controller {
	t.Helper()
	c, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start controller: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close controller: %v", err)
		}
	})
	return c
}

// AdminToken reads the bootstrap admin token.
func AdminToken(t testing.TB, c *server.Controller) string {
	t.Helper()
	b, err := os.ReadFile(c.AdminTokenPath())
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// AdminClient is an API client with the bootstrap admin token.
func AdminClient(t testing.TB, c *server.Controller) *apiclient.Client {
	t.Helper()
	cl, err := apiclient.New(c.APIURL(), AdminToken(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClusterNodes is a controller cluster of real nodes in this process, on
// fixed loopback ports so that nodes can be stopped and restarted.
type ClusterNodes struct {
	t       testing.TB
	Configs []server.Config
	nodes   []*server.Controller
}

// ClusterOption adjusts every node's configuration.
type ClusterOption func(i int, cfg *server.Config)

// Cluster starts n nodes: the first bootstraps, the others join it with
// the bootstrap admin token. Raft timeouts are shortened (500ms) so
// failovers in tests are quick. All nodes stop at cleanup.
func Cluster(t testing.TB, n int, opts ...ClusterOption) *ClusterNodes {
	t.Helper()
	c := &ClusterNodes{t: t, nodes: make([]*server.Controller, n)}
	for i := range n {
		cfg := server.Config{
			NodeID:               fmt.Sprintf("n%d", i+1),
			DataDir:              t.TempDir(),
			APIAddr:              FreeAddr(t),
			RaftAddr:             FreeAddr(t),
			NATSListen:           "127.0.0.1:-1",
			Bootstrap:            i == 0,
			Logger:               Logger(),
			RaftHeartbeatTimeout: 500 * time.Millisecond,
			RaftElectionTimeout:  500 * time.Millisecond,
			StartTimeout:         60 * time.Second,
		}
		if i > 0 {
			cfg.Join = "http://" + c.Configs[0].APIAddr
			cfg.JoinTokenFile = filepath.Join(c.Configs[0].DataDir, server.AdminTokenFile)
		}
		for _, o := range opts {
			o(i, &cfg)
		}
		c.Configs = append(c.Configs, cfg)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
	})
	for i := range n {
		c.Start(i)
	}
	Eventually(t, 60*time.Second, "every node to see all members", func() bool {
		for _, nd := range c.nodes {
			srv, err := nd.Store().Servers()
			if err != nil || len(srv) != n {
				return false
			}
		}
		return true
	})
	return c
}

// Start (re)starts node i with its configuration.
func (c *ClusterNodes) Start(i int) *server.Controller {
	c.t.Helper()
	if c.nodes[i] != nil {
		c.t.Fatalf("node %d is running", i)
	}
	nd, err := server.Start(context.Background(), c.Configs[i])
	if err != nil {
		c.t.Fatalf("start node %s: %v", c.Configs[i].NodeID, err)
	}
	c.nodes[i] = nd
	return nd
}

// Stop stops node i (no-op when stopped).
func (c *ClusterNodes) Stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close node %s: %v", c.Configs[i].NodeID, err)
	}
	c.nodes[i] = nil
}

// Node is node i, nil while stopped.
func (c *ClusterNodes) Node(i int) *server.Controller { return c.nodes[i] }

// Len is the number of nodes.
func (c *ClusterNodes) Len() int { return len(c.nodes) }

// Leader waits until a running node leads (and every running,
// non-isolated node agrees is not checked) and returns its index.
func (c *ClusterNodes) Leader() int {
	c.t.Helper()
	idx := -1
	Eventually(c.t, 60*time.Second, "a leader", func() bool {
		for i, nd := range c.nodes {
			if nd != nil && nd.IsLeader() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// AdminToken is the bootstrap admin token.
func (c *ClusterNodes) AdminToken() string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Configs[0].DataDir, server.AdminTokenFile))
	if err != nil {
		c.t.Fatalf("read admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// URLs lists every node's API URL (running or not).
func (c *ClusterNodes) URLs() []string {
	var out []string
	for _, cfg := range c.Configs {
		out = append(out, "http://"+cfg.APIAddr)
	}
	return out
}

// Client is an API client with token that talks to node i only.
func (c *ClusterNodes) Client(i int, token string) *apiclient.Client {
	c.t.Helper()
	cl, err := apiclient.New(c.URLs()[i], token)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// AdminClient is an admin client that may use any node.
func (c *ClusterNodes) AdminClient() *apiclient.Client {
	c.t.Helper()
	cl, err := apiclient.New(strings.Join(c.URLs(), ","), c.AdminToken())
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}
