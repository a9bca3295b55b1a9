package sensor_test

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Two sensors on sibling cgroups never see or act on each other's
// processes.
func TestScope_TwoSensorsIsolated(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	dir := t.TempDir()
	truePath := lookPath(t, "true")
	x := copyFile(t, truePath, filepath.Join(dir, "scope-x"))
	marker := copyFile(t, truePath, filepath.Join(dir, "scope-marker"))
	a.apply(&sensor.Resolved{DenyExec: []sensor.ExecRule{{ID: fileID(t, x), Mode: palisadev1.Mode_MODE_ENFORCE}}})
	peer := bpftest.Listen(t, "127.0.8.1:0")
	if err := a.s.SetQuarantine(true, nil); err != nil {
		t.Fatal(err)
	}

	if _, sig, err := b.run(x); err != nil || sig != 0 {
		t.Fatalf("x in B's cgroup: signal %v err %v, want it to run", sig, err)
	}
	b.mustConnect(peer)
	if _, sig, err := a.run(x); err != nil || sig != syscall.SIGKILL {
		t.Fatalf("x in A's cgroup: signal %v err %v, want SIGKILL", sig, err)
	}
	a.mustNotConnect(peer)
	killed := a.log.wait(t, "kill in A", execOf("/scope-x"))

	// Ring buffers are FIFO: once B reports the marker run after A's kill,
	// any event B had (wrongly) seen for A's process would be before it.
	if _, _, err := b.run(marker); err != nil {
		t.Fatal(err)
	}
	b.log.wait(t, "marker in B", execOf("/scope-marker"))
	for _, ev := range b.log.all() {
		if ev.GetProcess().GetPid() == killed.GetProcess().GetPid() {
			t.Errorf("sensor B saw A's process: %v", ev)
		}
		if ev.GetProcess().GetCgroupId() != fileID(t, b.cg.Path).Ino {
			t.Errorf("sensor B event from cgroup %d: %v", ev.GetProcess().GetCgroupId(), ev)
		}
	}
	for _, ev := range a.log.all() {
		if ev.GetProcess().GetCgroupId() != fileID(t, a.cg.Path).Ino {
			t.Errorf("sensor A event from cgroup %d: %v", ev.GetProcess().GetCgroupId(), ev)
		}
	}
}

// A pin dir claimed by one scope is refused for another.
func TestScope_PinDirBoundToScope(t *testing.T) {
	a, b := newEnv(t), newEnvNoSensor(t)
	_, err := sensor.Open(t.Context(), sensor.Config{CgroupPath: b.cg.Path, PinDir: a.pinDir, Logger: testLogger(t)})
	if err == nil {
		t.Fatal("opened a sensor on another scope's pin dir")
	}
}
