package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/bpftest"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

func waitAction(t *testing.T, cl *apiclient.Client, id, want string) apiv1.Action {
	t.Helper()
	var a apiv1.Action
	controllertest.Eventually(t, waitLong, "action "+id+" "+want, func() bool {
		if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/actions/"+id, nil, nil, &a); err != nil {
			t.Fatalf("get action: %v", err)
		}
		if a.State == "failed" || a.State == "expired" {
			t.Fatalf("action %s ended %s: %s", id, a.State, a.Error)
		}
		return a.State == want
	})
	return a
}

// TestContainment_PolicyQuarantineReleaseOverNATS drives the whole loop:
// a policy applied through the API reaches the agent's kernel; a
// quarantine asked of the API becomes a signed command, is enforced in the
// kernel and acknowledged; it survives an agent restart after the pins are
// gone (a reboot); a release restores the network.
func TestContainment_PolicyQuarantineReleaseOverNATS(t *testing.T) {
	bpftest.RequireBPF(t)
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	cg, pins, state, bin := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir(), t.TempDir()
	evil := bpftest.CopyExe(t, "/bin/true", filepath.Join(bin, "evil"))
	outside := bpftest.Listen(t, "127.0.0.1:0")

	start := func(token string) *daemon.Agent {
		a, err := daemon.Start(context.Background(), daemon.Config{
			StateDir: state, ControllerURL: c.APIURL(), EnrollToken: token,
			HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: pins, Logger: controllertest.Logger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start(newToken(t, cl, ""))
	defer func() { a.Close() }()
	host := a.HostID()

	// Policy through the API → KV → agent → kernel.
	var applied apiv1.Policy
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/policies", nil, apiv1.ApplyPolicyRequest{
		Name: "e2e.yaml", Source: fmt.Sprintf("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: e2e}\nspec:\n  mode: enforce\n  exec:\n    deny: [%q]\n", evil),
	}, &applied); err != nil {
		t.Fatalf("apply policy: %v", err)
	}
	controllertest.Eventually(t, waitLong, "policy in force on the host", func() bool {
		h, _ := host2(t, cl, host)
		return h.PolicyVersion == applied.Version
	})
	if sig := signalOf(t, cg.Command(evil)); sig != 9 {
		t.Fatalf("denied executable from the controller's policy: signal %v, want SIGKILL", sig)
	}

	// Quarantine.
	if !cg.CanDial(outside) {
		t.Fatal("no connectivity before quarantine")
	}
	var act apiv1.Action
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/hosts/"+host+"/quarantine", nil,
		apiv1.QuarantineRequest{Reason: "e2e"}, &act); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	waitAction(t, cl, act.ID, "acked")
	if q, err := a.Sensor().Quarantined(); err != nil || !q {
		t.Fatalf("kernel quarantine flag after ack: %v %v", q, err)
	}
	if cg.CanDial(outside) {
		t.Fatal("quarantined host reached a non-allowlisted address")
	}
	controllertest.Eventually(t, waitLong, "heartbeat reports quarantine", func() bool {
		h, _ := host2(t, cl, host)
		return h.Quarantined
	})

	// A reboot: agent gone, pins gone. The restarted agent quarantines again
	// before hearing from the controller.
	a.Close()
	if err := sensor.Cleanup(pins); err != nil {
		t.Fatal(err)
	}
	if !cg.CanDial(outside) {
		t.Fatal("cleanup did not lift enforcement (test setup)")
	}
	a = start("")
	if q, err := a.Sensor().Quarantined(); err != nil || !q {
		t.Fatalf("after a reboot the agent did not re-apply quarantine: %v %v", q, err)
	}
	if cg.CanDial(outside) {
		t.Fatal("quarantine not in force after the reboot")
	}

	// Release.
	var rel apiv1.Action
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/hosts/"+host+"/release", nil,
		apiv1.QuarantineRequest{Reason: "cleared"}, &rel); err != nil {
		t.Fatalf("release: %v", err)
	}
	waitAction(t, cl, rel.ID, "acked")
	if !cg.CanDial(outside) {
		t.Fatal("release did not restore connectivity")
	}
}

func host2(t *testing.T, cl *apiclient.Client, id string) (apiv1.Host, error) {
	t.Helper()
	var h apiv1.Host
	err := cl.Do(context.Background(), http.MethodGet, "/api/v1/hosts/"+id, nil, nil, &h)
	return h, err
}

// TestContainment_OfflineHostGetsItsCommandOnReconnect: a quarantine
// asked while the agent is down waits in the COMMANDS stream ("sent", not
// done) and is enforced and acknowledged when the agent comes back.
func TestContainment_OfflineHostGetsItsCommandOnReconnect(t *testing.T) {
	bpftest.RequireBPF(t)
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	cg, pins, state := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir()
	start := func(token string) *daemon.Agent {
		a, err := daemon.Start(context.Background(), daemon.Config{StateDir: state, ControllerURL: c.APIURL(), EnrollToken: token,
			HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: pins, Logger: controllertest.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start(newToken(t, cl, ""))
	host := a.HostID()
	controllertest.Eventually(t, waitLong, "online", func() bool { h, _ := host2(t, cl, host); return h.Online })
	a.Close()

	var act apiv1.Action
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/hosts/"+host+"/quarantine", nil,
		apiv1.QuarantineRequest{Reason: "while offline"}, &act); err != nil {
		t.Fatal(err)
	}
	waitAction(t, cl, act.ID, "sent")
	outside := bpftest.Listen(t, "127.0.0.1:0")
	if !cg.CanDial(outside) {
		t.Fatal("quarantined before the host heard of it")
	}
	a = start("")
	defer a.Close()
	waitAction(t, cl, act.ID, "acked")
	if cg.CanDial(outside) {
		t.Fatal("the command delivered on reconnect is not enforced")
	}
}
