package bpftest_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/internal/bpftest"
)

func TestCgroupLifecycle(t *testing.T) {
	bpftest.RequireBPF(t)
	var path, pinDir string
	t.Run("inner", func(t *testing.T) {
		cg := bpftest.NewCgroup(t)
		path = cg.Path
		pinDir = bpftest.PinDir(t)
		if err := os.Mkdir(pinDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// A process started inside the cgroup and left running is killed
		// at cleanup.
		cmd := cg.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait()
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
		if err != nil || !strings.Contains(string(b), "0::"+strings.TrimPrefix(path, bpftest.CgroupRoot)+"\n") {
			t.Errorf("child cgroup: %q %v, want %s", b, err, path)
		}
		pids, err := cg.PIDs()
		if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
			t.Errorf("PIDs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
		}
	})
	for _, p := range []string{path, pinDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
	if !strings.HasPrefix(path, bpftest.CgroupRoot+"/"+bpftest.Prefix) {
		t.Errorf("cgroup %s outside %s", path, bpftest.CgroupRoot)
	}
}

func TestRequireBPF_FatalWhenRequired(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root BPF is available; the skip path is exercised by non-root runs")
	}
	t.Setenv("PALISADE_REQUIRE_BPF", strconv.Itoa(1))
	ft := &fakeT{TB: t}
	func() {
		defer func() { recover() }()
		bpftest.RequireBPF(ft)
	}()
	if !ft.fatal {
		t.Error("RequireBPF did not fail with PALISADE_REQUIRE_BPF=1")
	}
}

type fakeT struct {
	testing.TB
	fatal bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.fatal = true
	panic("fatal")
}
func (f *fakeT) Skipf(string, ...any) { panic("skip") }
