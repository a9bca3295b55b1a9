package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/controller/ctl"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/bpftest"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

type scopedAgent struct {
	a  *daemon.Agent
	cg *bpftest.Cgroup
}

func startScoped(t *testing.T, c *server.Controller, cl *apiclient.Client) scopedAgent {
	t.Helper()
	cg := bpftest.NewCgroup(t)
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: t.TempDir(), ControllerURL: c.APIURL(), EnrollToken: newToken(t, cl, ""),
		HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: bpftest.PinDir(t), Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return scopedAgent{a, cg}
}

func applyPolicy(t *testing.T, c *server.Controller, cl *apiclient.Client, hosts []string, doc string) {
	t.Helper()
	var p apiv1.Policy
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/policies", nil, apiv1.ApplyPolicyRequest{Name: "e2e.yaml", Source: doc}, &p); err != nil {
		t.Fatalf("apply policy: %v", err)
	}
	for _, h := range hosts {
		controllertest.Eventually(t, waitLong, "policy on "+h, func() bool { v, _ := host2(t, cl, h); return v.PolicyVersion == p.Version })
	}
}

func incidents(t *testing.T, cl *apiclient.Client, host string) []apiv1.Incident {
	t.Helper()
	var l apiv1.IncidentList
	if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/incidents", nil, nil, &l); err != nil {
		t.Fatal(err)
	}
	var out []apiv1.Incident
	for _, in := range l.Incidents {
		if in.HostID == host {
			out = append(out, in)
		}
	}
	return out
}

// TestResponse_HoneytokenQuarantinesHostAutomatically: a process opens a
// decoy credential file the agent planted; the alert becomes an incident
// and the default response policy quarantines the host, in the kernel.
func TestResponse_HoneytokenQuarantinesHostAutomatically(t *testing.T) {
	bpftest.RequireBPF(t)
	for _, dry := range []bool{false, true} {
		t.Run(fmt.Sprintf("dryRun=%t", dry), func(t *testing.T) {
			c := controllertest.Start(t, controllertest.Config(t))
			cl := controllertest.AdminClient(t, c)
			ag := startScoped(t, c, cl)
			host := ag.a.HostID()
			decoy := filepath.Join(t.TempDir(), ".aliyun", "config.json.bak")
			doc := fmt.Sprintf("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: honey}\nspec:\n  mode: enforce\n"+
				"  credentials:\n    honeytokens:\n      - {path: %q, provider: alibaba}\n", decoy)
			if dry {
				doc += "  response:\n    dryRun: true\n    actions:\n      - {minSeverity: critical, action: quarantine}\n"
			}
			applyPolicy(t, c, cl, []string{host}, doc)
			if _, err := os.Stat(decoy); err != nil {
				t.Fatalf("honeytoken not planted: %v", err)
			}
			outside := bpftest.Listen(t, "127.0.0.1:0")

			_ = ag.cg.Command("/bin/cat", decoy).Run() // the attacker's read

			var inc apiv1.Incident
			controllertest.Eventually(t, waitLong, "incident for the honeytoken", func() bool {
				for _, in := range incidents(t, cl, host) {
					if in.Rule == "honeytoken-opened" {
						inc = in
						return dry && strings.Contains(in.Note, "dry run") || !dry && len(in.ActionIDs) > 0
					}
				}
				return false
			})
			if inc.Severity != "critical" || len(inc.AlertIDs) == 0 {
				t.Fatalf("incident = %+v", inc)
			}
			var alerts struct {
				Alerts []map[string]any `json:"alerts"`
			}
			if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/incidents/"+inc.ID+"/alerts", nil, nil, &alerts); err != nil || len(alerts.Alerts) == 0 {
				t.Fatalf("incident alerts: %v %v", alerts, err)
			}
			if dry {
				if h, _ := host2(t, cl, host); h.Quarantined || len(inc.ActionIDs) > 0 {
					t.Fatalf("dry run acted: host %+v incident %+v", h, inc)
				}
				if !ag.cg.CanDial(outside) {
					t.Fatal("dry run cut the network")
				}
				return
			}
			act := waitAction(t, cl, inc.ActionIDs[0], "acked")
			if !strings.Contains(act.Reason, "honeytoken-opened") || act.Actor != "system:responder" {
				t.Fatalf("automatic action does not say why: %+v", act)
			}
			if q, err := ag.a.Sensor().Quarantined(); err != nil || !q {
				t.Fatalf("kernel quarantine: %v %v", q, err)
			}
			if ag.cg.CanDial(outside) {
				t.Fatal("automatically quarantined host still reaches the network")
			}
			// The audit log names the responder and the rule.
			var audit apiv1.AuditList
			if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/audit", map[string][]string{"actor": {"system:responder"}, "limit": {"1000"}}, nil, &audit); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range audit.Entries {
				if strings.Contains(e.Detail, "honeytoken-opened") {
					found = true
				}
			}
			if !found {
				t.Fatalf("no audit entry names the rule: %+v", audit.Entries)
			}
		})
	}
}

// TestResponse_LeakedKeyHuntFindsBlastRadius: a leaked key reported once
// is found by two agents with separate scopes — in a file, an environment
// variable and an argv — and the blast radius lists all of it.
func TestResponse_LeakedKeyHuntFindsBlastRadius(t *testing.T) {
	bpftest.RequireBPF(t)
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	const key = "AKIAIOSFODNN7EXAMPLE"
	credDir := t.TempDir()
	credFile := filepath.Join(credDir, "credentials")
	if err := os.WriteFile(credFile, []byte("[default]\naws_access_key_id = "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: hunt}\nspec:\n  mode: audit\n"+
		"  credentials:\n    files:\n      - paths: [%q]\n        readers: [\"/bin/cat\"]\n", credFile)
	a1, a2 := startScoped(t, c, cl), startScoped(t, c, cl)
	applyPolicy(t, c, cl, []string{a1.a.HostID(), a2.a.HostID()}, doc)

	// Processes using the key, one per scope: in the environment, in argv.
	envProc := a1.cg.Command("/bin/sleep", "300")
	envProc.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+key)
	argvProc := a2.cg.Command("/bin/sh", "-c", "sleep 300 # "+key)
	for _, p := range []interface{ Start() error }{envProc, argvProc} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { envProc.Process.Kill(); argvProc.Process.Kill(); envProc.Wait(); argvProc.Wait() })

	var lc apiv1.LeakedCredential
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/leaked-credentials", nil, apiv1.AddLeakedCredentialRequest{KeyID: key}, &lc); err != nil {
		t.Fatal(err)
	}
	var br apiv1.BlastRadius
	controllertest.Eventually(t, waitLong, "blast radius on both hosts", func() bool {
		if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/leaked-credentials/"+lc.ID+"/blast-radius", nil, nil, &br); err != nil {
			t.Fatal(err)
		}
		procs := map[string]bool{}
		for _, p := range br.Processes {
			procs[p.Host+" "+strings.Fields(p.Where)[2]] = true // "<masked> in env NAME" / "<masked> in argv N"
		}
		return len(br.Hosts) == 2 && len(br.Files) >= 2 && procs[a1.a.HostID()+" env"] && procs[a2.a.HostID()+" argv"]
	})
	for _, f := range br.Files {
		if f.Path != credFile {
			t.Errorf("file finding %+v, want %s", f, credFile)
		}
	}
	if strings.Contains(fmt.Sprint(br), key) {
		t.Fatal("the blast radius shows the full key id")
	}
	env := func(k string) string {
		return map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN_FILE": c.AdminTokenPath()}[k]
	}
	var out bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"creds", "leaked", "blast-radius", lc.ID}, &out, io.Discard, env); code != 0 ||
		!strings.Contains(out.String(), a1.a.HostID()) || !strings.Contains(out.String(), a2.a.HostID()) || strings.Contains(out.String(), key) {
		t.Fatalf("palisadectl creds leaked blast-radius: exit %d\n%s", code, out.String())
	}
}
