// Package controllertest starts real controller nodes for tests: Raft,
// embedded NATS and the API on random loopback ports in t.TempDir(),
// stopped in t.Cleanup.
package controllertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
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
