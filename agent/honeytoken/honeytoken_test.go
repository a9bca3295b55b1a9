package honeytoken

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestContent_Realistic(t *testing.T) {
	b, id, err := Content("alibaba")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Current  string `json:"current"`
		Profiles []struct {
			Mode        string `json:"mode"`
			AccessKeyID string `json:"access_key_id"`
		} `json:"profiles"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Profiles[0].AccessKeyID != id || !strings.HasPrefix(id, "LTAI") || len(id) != 24 {
		t.Fatalf("alibaba decoy %s (%v)", b, err)
	}
	b, id, _ = Content("aws")
	if !strings.HasPrefix(id, "AKIA") || len(id) != 20 || !strings.Contains(string(b), "aws_access_key_id = "+id) {
		t.Fatalf("aws decoy %s", b)
	}
	// a canary is findable by the leaked-key hunter, like a real key
	ks, err := hunt.NewKeySet([]hunt.Key{{ID: id}})
	if err != nil || !ks.Contains(string(b)) {
		t.Fatalf("canary not matchable: %v", err)
	}
	if _, _, err := Content("gcp"); err == nil {
		t.Fatal("unknown provider accepted")
	}
}

func TestPlanter_PlantRefuseRemove(t *testing.T) {
	dir := t.TempDir()
	p := &Planter{StateDir: filepath.Join(dir, "state"), Logger: quiet()}
	real := filepath.Join(dir, "root", ".aws", "credentials")
	if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, []byte("real\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "root", ".aws", "link")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), link); err != nil {
		t.Fatal(err)
	}
	decoy := filepath.Join(dir, "root", ".aliyun", "config.json.bak") // .aliyun does not exist yet
	res, err := p.Sync([]*palisadev1.Honeytoken{
		{Path: decoy, Provider: "alibaba"},
		{Path: real, Provider: "aws"},
		{Path: link, Provider: "generic"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Planted) != 1 || res.Planted[0].Path != decoy {
		t.Fatalf("planted %+v problems %v", res.Planted, res.Problems)
	}
	for _, path := range []string{real, link} {
		if !errors.Is(res.Problems[path], ErrExists) {
			t.Errorf("%s: problem %v, want ErrExists", path, res.Problems[path])
		}
	}
	if b, _ := os.ReadFile(real); string(b) != "real\n" {
		t.Fatal("real file changed")
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); !os.IsNotExist(err) {
		t.Fatal("wrote through a symlink")
	}
	st, err := os.Stat(decoy)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("decoy %v %v", st, err)
	}
	if st, _ := os.Stat(filepath.Dir(decoy)); st.Mode().Perm() != 0o700 {
		t.Errorf("created dir mode %v", st.Mode())
	}
	// Sync again: kept, not re-planted
	res, err = p.Sync([]*palisadev1.Honeytoken{{Path: decoy, Provider: "alibaba"}})
	if err != nil || len(res.Kept) != 1 || len(res.Planted) != 0 {
		t.Fatalf("resync %+v %v", res, err)
	}
	// no longer listed: removed, with the directory the planter created
	res, err = p.Sync(nil)
	if err != nil || len(res.Removed) != 1 {
		t.Fatalf("remove %+v %v", res, err)
	}
	if _, err := os.Lstat(filepath.Dir(decoy)); !os.IsNotExist(err) {
		t.Error("created directory left behind")
	}
	// a decoy a person replaced is left alone
	if _, err := p.Sync([]*palisadev1.Honeytoken{{Path: decoy, Provider: "alibaba"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(decoy, []byte("now a real config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveAll(); err == nil || !errors.Is(err, ErrExists) {
		t.Fatalf("RemoveAll over a replaced decoy: %v", err)
	}
	if b, _ := os.ReadFile(decoy); string(b) != "now a real config\n" {
		t.Fatal("replaced decoy removed")
	}
	recs, _ := p.Records()
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
}

// TestPlanter_OpenRaisesCriticalAlert plants a decoy, hands it to a real
// sensor (in a child cgroup) through a bundle's honeytokens, opens it from
// a process in the cgroup, and checks the default pack's critical alert.
func TestPlanter_OpenRaisesCriticalAlert(t *testing.T) {
	bpftest.RequireBPF(t)
	cg := bpftest.NewCgroup(t)
	pinDir := bpftest.PinDir(t)
	t.Cleanup(func() { _ = sensor.Cleanup(pinDir) })
	dir := t.TempDir()
	p := &Planter{StateDir: filepath.Join(dir, "state"), Logger: quiet()}
	t.Cleanup(func() {
		if err := p.RemoveAll(); err != nil {
			t.Errorf("remove decoys: %v", err)
		}
	})
	decoy := filepath.Join(dir, "home", "ops", ".aws", "credentials.old")
	bundle := &palisadev1.PolicyBundle{DefaultMode: palisadev1.Mode_MODE_AUDIT,
		Honeytokens: []*palisadev1.Honeytoken{{Path: decoy, Provider: "aws"}}}
	if res, err := p.Sync(bundle.GetHoneytokens()); err != nil || len(res.Planted) != 1 {
		t.Fatalf("plant: %+v %v", res, err)
	}
	s, err := sensor.Open(context.Background(), sensor.Config{CgroupPath: cg.Path, PinDir: pinDir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.ApplyBundle(bundle); err != nil {
		t.Fatal(err)
	}
	e, err := rules.NewEngine(rules.Config{Logger: quiet(), Scope: cg.Path, CgroupRoot: bpftest.CgroupRoot})
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := rules.DefaultRules(bundle.GetDefaultMode())
	if err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	out, err := cg.Command(cat, decoy).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "aws_access_key_id") {
		t.Fatalf("cat (audit mode): %q %v", out, err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-s.Events():
			for _, a := range e.Evaluate(ev) {
				if a.GetRule() == "honeytoken-opened" {
					if a.GetSeverity() != "critical" || !a.GetEvent().GetFileOpen().GetHoneytoken() || a.GetEvent().GetFileOpen().GetPath() != decoy {
						t.Fatalf("alert %v", a)
					}
					return
				}
			}
		case <-deadline:
			t.Fatal("no honeytoken alert")
		}
	}
}
