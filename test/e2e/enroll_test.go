// Package e2e runs a real controller (Raft, embedded NATS, API) and real
// agents together.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/controller/ctl"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

const waitLong = 30 * time.Second

func newToken(t *testing.T, cl *apiclient.Client, ttl string) string {
	t.Helper()
	tok, err := cl.CreateEnrollToken(context.Background(), apiv1.CreateEnrollTokenRequest{TTL: ttl})
	if err != nil {
		t.Fatalf("create enrolment token: %v", err)
	}
	return tok.Token
}

func startAgent(t *testing.T, c *server.Controller, dir, token string) *daemon.Agent {
	t.Helper()
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: dir, ControllerURL: c.APIURL(), EnrollToken: token,
		HeartbeatInterval: 100 * time.Millisecond, Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	return a
}

func host(t *testing.T, cl *apiclient.Client, id string) (apiv1.Host, int) {
	t.Helper()
	hl, err := cl.Hosts(context.Background())
	if err != nil {
		t.Fatalf("list hosts: %v", err)
	}
	for _, h := range hl.Hosts {
		if h.ID == id {
			return h, len(hl.Hosts)
		}
	}
	return apiv1.Host{}, len(hl.Hosts)
}

func TestEnrol_OnlineOfflineAndRestartKeepsIdentity(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	dir := t.TempDir()

	a := startAgent(t, c, dir, newToken(t, cl, ""))
	id := a.HostID()
	controllertest.Eventually(t, waitLong, "host online", func() bool { h, _ := host(t, cl, id); return h.Online })
	h, n := host(t, cl, id)
	if n != 1 || h.Hostname == "" || h.Kernel == "" || h.LastSeen == nil || h.Quarantined {
		t.Fatalf("host = %+v (of %d), want one online host with hostname, kernel and last_seen", h, n)
	}
	fi, err := os.Stat(identity.Path(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}

	a.Close()
	controllertest.Eventually(t, waitLong, "host offline", func() bool { h, _ := host(t, cl, id); return !h.Online })

	// A restart reuses the identity; the (bogus) token is ignored.
	a2 := startAgent(t, c, dir, "pet_not-a-real-token")
	defer a2.Close()
	if a2.HostID() != id {
		t.Fatalf("restart changed host id: %s -> %s", id, a2.HostID())
	}
	controllertest.Eventually(t, waitLong, "host online again", func() bool { h, _ := host(t, cl, id); return h.Online })
	if _, n := host(t, cl, id); n != 1 {
		t.Fatalf("%d hosts after restart, want 1", n)
	}
}

func TestEnrol_BadTokensAreRefusedAndRecordNothing(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	ctx := context.Background()

	used := newToken(t, cl, "")
	a := startAgent(t, c, t.TempDir(), used)
	a.Close()
	expiring := newToken(t, cl, "1ms")
	time.Sleep(5 * time.Millisecond) // let the 1ms token expire

	auditBefore := auditLen(t, cl)
	hostsBefore, _ := cl.Hosts(ctx)
	for name, tok := range map[string]string{
		"wrong":   "pet_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"reused":  used,
		"expired": expiring,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := daemon.Start(ctx, daemon.Config{StateDir: dir, ControllerURL: c.APIURL(), EnrollToken: tok, Logger: controllertest.Logger()})
			if apiclient.StatusOf(err) != http.StatusUnauthorized {
				t.Fatalf("err = %v, want a 401", err)
			}
			if _, err := identity.Load(dir); !errors.Is(err, identity.ErrNotEnrolled) {
				t.Fatalf("identity after refused enrolment: %v, want none", err)
			}
		})
	}
	hostsAfter, _ := cl.Hosts(ctx)
	if len(hostsAfter.Hosts) != len(hostsBefore.Hosts) || auditLen(t, cl) != auditBefore {
		t.Fatalf("refused enrolments changed state: hosts %d->%d, audit %d->%d",
			len(hostsBefore.Hosts), len(hostsAfter.Hosts), auditBefore, auditLen(t, cl))
	}
}

func auditLen(t *testing.T, cl *apiclient.Client) int {
	t.Helper()
	var out apiv1.AuditList
	if err := cl.Do(context.Background(), "GET", "/api/v1/audit", map[string][]string{"limit": {"1000"}}, nil, &out); err != nil {
		t.Fatal(err)
	}
	return len(out.Entries)
}

func TestAgent_StateDirOfAnotherClusterIsRefused(t *testing.T) {
	c1 := controllertest.Start(t, controllertest.Config(t))
	c2 := controllertest.Start(t, controllertest.Config(t))
	dir := t.TempDir()
	a := startAgent(t, c1, dir, newToken(t, controllertest.AdminClient(t, c1), ""))
	a.Close()
	_, err := daemon.Start(context.Background(), daemon.Config{StateDir: dir, ControllerURL: c2.APIURL(),
		EnrollToken: newToken(t, controllertest.AdminClient(t, c2), ""), Logger: controllertest.Logger()})
	if !errors.Is(err, enroll.ErrClusterMismatch) {
		t.Fatalf("err = %v, want ErrClusterMismatch", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the state dir", err)
	}
}

func TestAPI_BadRequests(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	admin := controllertest.AdminToken(t, c)
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"unknown route", "GET", "/api/v1/nope", admin, "", 404},
		{"unknown top-level route", "GET", "/whatever", "", "", 404},
		{"no token", "GET", "/api/v1/hosts", "", "", 401},
		{"wrong token", "GET", "/api/v1/hosts", "pat_wrong", "", 401},
		{"malformed JSON", "POST", "/api/v1/enroll-tokens", admin, "{ttl:", 400},
		{"unknown field", "POST", "/api/v1/enroll-tokens", admin, `{"ttl":"1h","colour":"red"}`, 400},
		{"trailing data", "POST", "/api/v1/enroll-tokens", admin, `{"ttl":"1h"} {}`, 400},
		{"bad ttl", "POST", "/api/v1/enroll-tokens", admin, `{"ttl":"forever"}`, 400},
		{"ttl too long", "POST", "/api/v1/enroll-tokens", admin, `{"ttl":"10000h"}`, 400},
		{"enrol malformed", "POST", "/api/v1/enroll", "", "not json", 400},
		{"enrol bad nkey", "POST", "/api/v1/enroll", "", `{"token":"pet_x","hostname":"h","nkey":"nope"}`, 400},
		{"enrol too large", "POST", "/api/v1/enroll", "", `{"token":"` + strings.Repeat("a", 2<<20) + `"}`, 413},
		{"wrong method", "DELETE", "/api/v1/hosts", admin, "", 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, c.APIURL()+tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			{
				var eb apiv1.Error
				if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == "" {
					t.Fatalf("error body not JSON with a message: %v", err)
				}
			}
		})
	}
	hl, _ := controllertest.AdminClient(t, c).Hosts(context.Background())
	if len(hl.Hosts) != 0 {
		t.Fatalf("bad requests created hosts: %v", hl.Hosts)
	}
}

func TestBootstrap_AdminTokenFileIsPrivateAndStable(t *testing.T) {
	cfg := controllertest.Config(t)
	c, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.AdminTokenPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	first := controllertest.AdminToken(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the cluster and the token.
	c2 := controllertest.Start(t, cfg)
	if got := controllertest.AdminToken(t, c2); got != first {
		t.Fatal("restart replaced the admin token")
	}
	if _, err := controllertest.AdminClient(t, c2).Hosts(context.Background()); err != nil {
		t.Fatalf("admin token after restart: %v", err)
	}
}

func TestPalisadectl_HostsAndTokens(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	env := func(k string) string {
		return map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN_FILE": c.AdminTokenPath()}[k]
	}
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := ctl.Run(context.Background(), args, &out, &errb, env)
		return out.String(), errb.String(), code
	}
	tok, stderr, code := run("enroll-token", "create", "--ttl", "1h")
	if code != 0 || !strings.HasPrefix(tok, "pet_") {
		t.Fatalf("enroll-token create: code %d, out %q, err %q", code, tok, stderr)
	}
	a := startAgent(t, c, t.TempDir(), strings.TrimSpace(tok))
	defer a.Close()
	cl := controllertest.AdminClient(t, c)
	controllertest.Eventually(t, waitLong, "host online", func() bool { h, _ := host(t, cl, a.HostID()); return h.Online })

	out, _, code := run("hosts", "list")
	if code != 0 || !strings.Contains(out, a.HostID()) || !strings.Contains(out, "online") {
		t.Fatalf("hosts list: code %d\n%s", code, out)
	}
	out, _, code = run("hosts", "list", "-o", "json")
	var hl apiv1.HostList
	if code != 0 || json.Unmarshal([]byte(out), &hl) != nil || len(hl.Hosts) != 1 || !hl.Hosts[0].Online {
		t.Fatalf("hosts list -o json: code %d\n%s", code, out)
	}
	if _, _, code := run("hosts", "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	badEnv := func(k string) string {
		return map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN": "pat_wrong"}[k]
	}
	var errb bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"hosts", "list"}, &bytes.Buffer{}, &errb, badEnv); code != 1 || !strings.Contains(errb.String(), "401") {
		t.Fatalf("wrong token: exit %d, stderr %q", code, errb.String())
	}
}
