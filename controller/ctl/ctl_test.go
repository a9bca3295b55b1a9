package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/controller/ctl"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/policy"
)

// A responder's day through palisadectl: tokens, quarantine, actions,
// policies, incidents, IOCs, leaked keys, the cluster and the audit log.
func TestCTL_Workflow(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	env := map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN_FILE": c.AdminTokenPath()}
	run := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := ctl.Run(context.Background(), args, &out, &errb, func(k string) string { return env[k] }); code != want {
			t.Fatalf("palisadectl %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errb.String())
		}
		return out.String()
	}
	// A responder token, printed alone on stdout.
	tok := strings.TrimSpace(run(0, "tokens", "create", "--role", "responder", "--name", "oncall"))
	if !strings.HasPrefix(tok, "pat_") {
		t.Fatalf("tokens create printed %q", tok)
	}
	// A host, enrolled directly through the API.
	cl := controllertest.AdminClient(t, c)
	et, err := cl.CreateEnrollToken(context.Background(), apiv1.CreateEnrollTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	enr, err := cl.Enroll(context.Background(), apiv1.EnrollRequest{Token: et.Token, Hostname: "web1", NKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	// The responder quarantines and releases it.
	delete(env, "PALISADE_TOKEN_FILE")
	env["PALISADE_TOKEN"] = tok
	run(0, "hosts", "quarantine", enr.HostID, "--reason", "beaconing")
	var hl apiv1.HostList
	if err := json.Unmarshal([]byte(run(0, "hosts", "list", "--quarantined", "true", "-o", "json")), &hl); err != nil || len(hl.Hosts) != 1 {
		t.Fatalf("quarantined hosts: %v %+v", err, hl)
	}
	run(1, "hosts", "quarantine", enr.HostID, "--reason", "again") // already quarantined: 409
	run(0, "hosts", "release", enr.HostID, "--reason", "clean")
	var al apiv1.ActionList
	if err := json.Unmarshal([]byte(run(0, "actions", "list", "--host", enr.HostID, "-o", "json")), &al); err != nil || len(al.Actions) != 2 {
		t.Fatalf("actions: %v %+v", err, al)
	}
	run(1, "policies", "apply", "/nonexistent") // no file
	// The responder may not apply policies; the admin may.
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, policy.Example(), 0o600); err != nil {
		t.Fatal(err)
	}
	run(1, "policies", "apply", file)
	env["PALISADE_TOKEN"] = controllertest.AdminToken(t, c)
	if out := run(0, "policies", "apply", file); !strings.Contains(out, "version 1") {
		t.Fatalf("policies apply: %q", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: x}\nspec:\n  network:\n    deny: [nope, 10.0.0.0/33]\n"), 0o600)
	run(1, "policies", "apply", bad)
	run(0, "policies", "list")
	run(0, "iocs", "add", "--type", "cidr", "--value", "203.0.113.0/24")
	run(0, "leaked-credentials", "add", "AKIAIOSFODNN7EXAMPLE")
	if out := run(0, "leaked-credentials", "list"); !strings.Contains(out, "AKIA************MPLE") {
		t.Fatalf("leaked key not masked: %q", out)
	}
	inc := strings.Fields(run(0, "incidents", "create", "--host", enr.HostID, "--rule", "manual", "--severity", "high"))[1]
	run(0, "incidents", "ack", inc)
	run(0, "incidents", "resolve", inc, "--note", "done")
	var cs apiv1.Cluster
	if err := json.Unmarshal([]byte(run(0, "cluster", "status", "-o", "json")), &cs); err != nil || cs.Leader != "n1" || len(cs.Nodes) != 1 {
		t.Fatalf("cluster status: %v %+v", err, cs)
	}
	if out := run(0, "audit", "list", "--action", "host."); !strings.Contains(out, "host.quarantine") || !strings.Contains(out, "host.release") {
		t.Fatalf("audit: %q", out)
	}
}
