package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/controller/ctl"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/bpftest"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/policy"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// signalOf runs cmd and returns the signal that ended it (0 if it exited).
func signalOf(t *testing.T, cmd *exec.Cmd) syscall.Signal {
	t.Helper()
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
		return 0
	}
	if err != nil {
		t.Fatalf("run %s: %v", cmd.Path, err)
	}
	return 0
}

func hostEvents(t *testing.T, cl *apiclient.Client, host, kind string) []*palisadev1.Event {
	t.Helper()
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	q := map[string][]string{"kind": {kind}, "limit": {"500"}}
	if err := cl.Do(context.Background(), "GET", "/api/v1/hosts/"+host+"/events", q, nil, &out); err != nil {
		t.Fatalf("events: %v", err)
	}
	var evs []*palisadev1.Event
	for _, raw := range out.Events {
		var ev palisadev1.Event
		if err := protojson.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, &ev)
	}
	return evs
}

func TestAgent_EnforcesPolicyAndReportsEvents(t *testing.T) {
	bpftest.RequireBPF(t)
	c := controllertest.Start(t, controllertest.Config(t))
	cl := controllertest.AdminClient(t, c)
	cg, pins, bin := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir()
	evil := bpftest.CopyExe(t, "/bin/true", filepath.Join(bin, "evil"))
	pol := writePolicy(t, fmt.Sprintf(`apiVersion: palisade/v1
kind: Policy
metadata: {name: e2e}
spec:
  mode: enforce
  exec:
    deny: [%q]
`, evil))
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: t.TempDir(), ControllerURL: c.APIURL(), EnrollToken: newToken(t, cl, ""),
		HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: pins, PolicyFile: pol,
		Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()

	if sig := signalOf(t, cg.Command(evil)); sig != syscall.SIGKILL {
		t.Fatalf("denied executable ended with signal %v, want SIGKILL", sig)
	}
	if sig := signalOf(t, cg.Command("/bin/true", "allowed-arg")); sig != 0 {
		t.Fatalf("allowed executable killed by %v", sig)
	}

	var killed, allowed *palisadev1.Event
	controllertest.Eventually(t, waitLong, "exec events at the controller", func() bool {
		for _, ev := range hostEvents(t, cl, a.HostID(), "exec") {
			switch {
			case ev.GetProcess().GetExePath() == evil && ev.GetExec().GetVerdict() == palisadev1.Verdict_VERDICT_KILLED:
				killed = ev
			case strings.Contains(strings.Join(ev.GetProcess().GetArgv(), " "), "allowed-arg"):
				allowed = ev
			}
		}
		return killed != nil && allowed != nil
	})
	if got := allowed.GetProcess().GetPpid(); got != uint32(os.Getpid()) {
		t.Errorf("allowed exec ppid = %d, want the test's pid %d", got, os.Getpid())
	}
	if allowed.GetExec().GetVerdict() != palisadev1.Verdict_VERDICT_ALLOWED || allowed.GetHostId() != a.HostID() || allowed.GetSeq() == 0 {
		t.Errorf("allowed exec event = %v", allowed)
	}

	// The heartbeat carries the sensors' features.
	controllertest.Eventually(t, waitLong, "features in the heartbeat", func() bool {
		h, _ := host(t, cl, a.HostID())
		for _, f := range h.Features {
			if f.Name == "tp_btf" && f.Available {
				return true
			}
		}
		return false
	})

	// palisadectl shows the kill.
	env := func(k string) string {
		return map[string]string{"PALISADE_API": c.APIURL(), "PALISADE_TOKEN_FILE": c.AdminTokenPath()}[k]
	}
	var out bytes.Buffer
	if code := ctl.Run(context.Background(), []string{"hosts", "events", a.HostID(), "--kind", "exec"}, &out, io.Discard, env); code != 0 ||
		!strings.Contains(out.String(), "killed") || !strings.Contains(out.String(), evil) {
		t.Fatalf("palisadectl hosts events: exit %d\n%s", code, out.String())
	}

	// Enforcement outlives the agent: the programs are pinned.
	a.Close()
	closed = true
	if sig := signalOf(t, cg.Command(evil)); sig != syscall.SIGKILL {
		t.Fatalf("after the agent stopped: signal %v, want SIGKILL", sig)
	}
}

func TestAgent_InvalidPolicyChangesNothing(t *testing.T) {
	bpftest.RequireBPF(t)
	cg, pins := bpftest.NewCgroup(t), bpftest.PinDir(t)
	pol := writePolicy(t, `apiVersion: palisade/v1
kind: Policy
metadata: {name: bad}
spec:
  mode: enforce
  network:
    deny: ["10.0.0.0/8", "not-a-cidr"]
  exec:
    deny: ["relative/path"]
`)
	_, err := daemon.Start(context.Background(), daemon.Config{StateDir: t.TempDir(), CgroupPath: cg.Path, PinDir: pins,
		PolicyFile: pol, Logger: controllertest.Logger()})
	var ve *policy.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("err = %v, want a validation error with both problems", err)
	}
	if _, err := os.Stat(pins); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin dir exists after a refused policy (%v): something was loaded", err)
	}
}

func TestAgent_StandaloneQuarantineSurvivesAgentAndIsReleased(t *testing.T) {
	bpftest.RequireBPF(t)
	cg, pins, state := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir()
	allowed, other := bpftest.Listen(t, "127.0.0.1:0"), bpftest.Listen(t, "127.0.0.1:0")
	quarantine := func(on bool) string {
		return writePolicy(t, fmt.Sprintf(`apiVersion: palisade/v1
kind: Policy
metadata: {name: q}
spec:
  mode: enforce
  quarantine:
    enabled: %t
    allow: [%q]
`, on, allowed.String()))
	}
	start := func(pol string) *daemon.Agent {
		a, err := daemon.Start(context.Background(), daemon.Config{StateDir: state, CgroupPath: cg.Path, PinDir: pins,
			PolicyFile: pol, Logger: controllertest.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if !cg.CanDial(other) {
		t.Fatal("connect failed before any policy")
	}
	a := start(quarantine(true))
	if a.HostID() != "" {
		t.Fatal("standalone agent has a host id")
	}
	if cg.CanDial(other) || !cg.CanDial(allowed) {
		t.Fatal("quarantine: want the other listener refused and the allowlisted one reachable")
	}
	a.Close()
	if cg.CanDial(other) {
		t.Fatal("quarantine lifted when the agent stopped")
	}
	// A restarted agent with no --policy re-applies the last good one...
	b := start("")
	if cg.CanDial(other) {
		t.Fatal("restarted agent lost the quarantine")
	}
	b.Close()
	// ...and one given a policy without quarantine releases the host.
	r := start(quarantine(false))
	defer r.Close()
	if !cg.CanDial(other) {
		t.Fatal("release did not restore connectivity")
	}
}
