package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/controller/ctl"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// TestTLS_DevCA: with --tls dev the API and NATS speak only TLS under the
// cluster's CA; an agent given ca.pem enrols, keeps the CA in its
// identity and heartbeats over TLS; plain HTTP, plain NATS and clients
// that do not trust the CA are refused.
func TestTLS_DevCA(t *testing.T) {
	cfg := controllertest.Config(t)
	cfg.TLS = "dev"
	c := controllertest.Start(t, cfg)
	if !strings.HasPrefix(c.APIURL(), "https://") {
		t.Fatalf("API URL %s is not https", c.APIURL())
	}
	caPEM, err := os.ReadFile(c.CAPath())
	if err != nil {
		t.Fatalf("ca.pem: %v", err)
	}
	cl, err := apiclient.New(c.APIURL(), controllertest.AdminToken(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.TrustCA(caPEM); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, cl, "")

	// Refused: plain HTTP on the TLS port, a client without the CA, plain NATS.
	if resp, err := http.Get("http://" + strings.TrimPrefix(c.APIURL(), "https://") + "/healthz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP answered 200: %s", body)
		}
	}
	untrusting, _ := apiclient.New(c.APIURL(), "")
	untrusting.RetryFor = 0
	if _, err := untrusting.EnrollInfo(context.Background()); err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}
	if nc, err := nats.Connect(strings.Replace(c.NATSURL(), "tls://", "nats://", 1), nats.MaxReconnects(0), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("plain NATS connection accepted")
	}

	caFile := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: state, ControllerURL: c.APIURL(), EnrollToken: tok, CAFile: caFile,
		HeartbeatInterval: 100 * time.Millisecond, Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatalf("agent over TLS: %v", err)
	}
	defer a.Close()
	id, err := identity.Load(state)
	if err != nil || !bytes.Equal(id.CAPEM, caPEM) || !strings.HasPrefix(id.NATSURLs[0], "tls://") {
		t.Fatalf("identity: %+v %v", id, err)
	}
	controllertest.Eventually(t, waitLong, "host online over TLS", func() bool { h, _ := host(t, cl, a.HostID()); return h.Online })

	// A restart needs no CA flag: the identity keeps it.
	a.Close()
	a2, err := daemon.Start(context.Background(), daemon.Config{StateDir: state, HeartbeatInterval: 100 * time.Millisecond, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	controllertest.Eventually(t, waitLong, "host online after restart", func() bool { h, _ := host(t, cl, a2.HostID()); return h.Online })

	// palisadectl with --ca-file.
	var out bytes.Buffer
	env := func(k string) string {
		return map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN_FILE": c.AdminTokenPath(), "PALISADE_CA_FILE": caFile}[k]
	}
	if code := ctl.Run(context.Background(), []string{"hosts", "list", "-o", "json"}, &out, io.Discard, env); code != 0 || !strings.Contains(out.String(), a2.HostID()) {
		t.Fatalf("palisadectl over TLS: exit %d %s", code, out.String())
	}
}
