package sensor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func TestProbe_ReportsEveryFeature(t *testing.T) {
	bpftest.RequireBPF(t)
	got := map[string]*palisadev1.Feature{}
	for _, f := range sensor.Probe() {
		got[f.GetName()] = f
		if !f.GetAvailable() && f.GetError() == "" {
			t.Errorf("%s unavailable without a reason", f.GetName())
		}
	}
	for _, name := range []string{sensor.FeatRingbuf, sensor.FeatTpBTF, sensor.FeatSyscallTP, sensor.FeatSchedTP,
		sensor.FeatCgroupSockAddr, sensor.FeatCgroupSKB, sensor.FeatSendSignal, sensor.FeatTaskUnderCgroup} {
		if f := got[name]; f == nil || !f.GetAvailable() {
			t.Errorf("%s: %v, want available (KERNEL.md)", name, f)
		}
	}
	// What KERNEL.md says this kernel refuses is reported, not fatal.
	for _, name := range []string{sensor.FeatLSM, sensor.FeatFentry, sensor.FeatKprobe} {
		if f := got[name]; f == nil {
			t.Errorf("%s not reported", name)
		} else {
			t.Logf("%s: available=%v %s", name, f.GetAvailable(), f.GetError())
		}
	}
}

func TestOpen_Errors(t *testing.T) {
	bpftest.RequireBPF(t)
	if _, err := sensor.Open(t.Context(), sensor.Config{}); err == nil {
		t.Error("opened without a scope")
	}
	_, err := sensor.Open(t.Context(), sensor.Config{CgroupPath: "/sys/fs/cgroup/unified/palisade-test-missing", PinDir: bpftest.PinDir(t)})
	if err == nil || !strings.Contains(err.Error(), "scope cgroup") {
		t.Errorf("missing cgroup: %v", err)
	}
}

func TestCollector_ExposesCounters(t *testing.T) {
	e := newEnv(t)
	bin := copyFile(t, lookPath(t, "true"), filepath.Join(t.TempDir(), "metrics-true"))
	e.apply(&sensor.Resolved{DenyExec: []sensor.ExecRule{{ID: fileID(t, bin)}}})
	e.run(bin)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e.s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			values[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	if len(values) != 6 || values["palisade_sensor_kills_total"] != 1 || values["palisade_sensor_ringbuf_drops_total"] != 0 {
		t.Errorf("metrics = %v", values)
	}
	if e.s.Drops() != 0 {
		t.Errorf("drops %d", e.s.Drops())
	}
}

func TestFiles_HoneytokenFlagged(t *testing.T) {
	e := newEnv(t)
	decoy := filepath.Join(t.TempDir(), "config.json.bak")
	if err := os.WriteFile(decoy, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := e.s.ApplyBundle(&palisadev1.PolicyBundle{
		DefaultMode: palisadev1.Mode_MODE_AUDIT,
		Honeytokens: []*palisadev1.Honeytoken{{Path: decoy, Provider: "alibaba"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, sig, err := e.run(lookPath(t, "cat"), decoy); err != nil || sig != 0 {
		t.Fatalf("signal %v err %v", sig, err)
	}
	ev := e.log.wait(t, "honeytoken open", func(ev *palisadev1.Event) bool { return ev.GetFileOpen() != nil })
	if fo := ev.GetFileOpen(); !fo.GetHoneytoken() || fo.GetPath() != decoy || fo.GetRule() != "honeytokens[0]" ||
		fo.GetVerdict() != palisadev1.Verdict_VERDICT_AUDITED {
		t.Errorf("event %v", fo)
	}
}
