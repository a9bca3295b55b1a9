package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

type proc struct {
	args []string
	cmd  *exec.Cmd
	api  string
	dir  string
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	p.cmd = exec.Command(bin, p.args...)
	if os.Getenv("PALISADE_TEST_LOG") == "1" {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// Three palisade-controller processes: a leader killed with SIGKILL, the
// others elect a new one and take writes; the killed node restarts and
// catches up.
func TestProcesses_LeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the controller binary")
	}
	bin := filepath.Join(t.TempDir(), "palisade-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/palisade-sec/palisade/controller/cmd/palisade-controller").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var ps []*proc
	t.Cleanup(func() {
		for _, p := range ps {
			p.kill()
		}
	})
	for i := range 3 {
		p := &proc{api: controllertest.FreeAddr(t), dir: t.TempDir()}
		p.args = []string{"run", "--config", filepath.Join(p.dir, "none.yaml"), "--node-id", fmt.Sprintf("n%d", i+1), "--data-dir", p.dir,
			"--api-addr", p.api, "--raft-addr", controllertest.FreeAddr(t), "--nats-listen", "127.0.0.1:-1",
			"--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms"}
		if i == 0 {
			p.args = append(p.args, "--bootstrap")
		} else {
			p.args = append(p.args, "--join", "http://"+ps[0].api, "--join-token-file", filepath.Join(ps[0].dir, "admin.token"))
		}
		if err := os.WriteFile(filepath.Join(p.dir, "none.yaml"), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		p.start(t, bin)
		if i == 0 {
			controllertest.Eventually(t, waitLong, "bootstrap admin token", func() bool {
				_, err := os.Stat(filepath.Join(p.dir, "admin.token"))
				return err == nil
			})
		}
	}
	tokb, _ := os.ReadFile(filepath.Join(ps[0].dir, "admin.token"))
	tok := strings.TrimSpace(string(tokb))
	var urls []string
	for _, p := range ps {
		urls = append(urls, "http://"+p.api)
	}
	cl, err := apiclient.New(strings.Join(urls, ","), tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	status := func() apiv1.Cluster {
		var st apiv1.Cluster
		_ = cl.Do(ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &st)
		return st
	}
	controllertest.Eventually(t, waitLong, "three voters", func() bool {
		st := status()
		up := 0
		for _, n := range st.Nodes {
			if n.State == "Leader" || n.State == "Follower" {
				up++
			}
		}
		return up == 3
	})
	for i := range 5 {
		if err := addIOC(ctx, cl, i); err != nil {
			t.Fatal(err)
		}
	}
	leader := status().Leader
	idx := int(leader[1] - '1')
	t.Logf("killing leader %s (pid %d)", leader, ps[idx].cmd.Process.Pid)
	ps[idx].kill()
	for i := 5; i < 10; i++ {
		if err := addIOC(ctx, cl, i); err != nil {
			t.Fatalf("write after the leader was killed: %v", err)
		}
	}
	if st := status(); st.Leader == leader || st.Leader == "" {
		t.Fatalf("leader after kill = %q", st.Leader)
	}
	ps[idx].start(t, bin)
	one, _ := apiclient.New(urls[idx], tok)
	controllertest.Eventually(t, waitLong, "restarted node catches up", func() bool {
		var l apiv1.IOCList
		if err := one.Do(ctx, http.MethodGet, "/api/v1/iocs", nil, nil, &l); err != nil {
			return false
		}
		return len(l.IOCs) == 10
	})
	b, _ := json.Marshal(status())
	t.Logf("cluster after restart: %s", b)
}
