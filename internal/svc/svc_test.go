package svc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/packaging/systemd"
)

func TestProgram_StartReturnsAtOnceStopCancelsAndWaits(t *testing.T) {
	stopped := make(chan struct{})
	p := &program{work: func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // cleanup takes a while
		close(stopped)
		return errors.New("closed")
	}}
	start := time.Now()
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Millisecond {
		t.Errorf("Start took %v", d)
	}
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned before the work finished")
	}
	if p.err == nil || p.err.Error() != "closed" {
		t.Errorf("err %v", p.err)
	}
}

func TestProgram_WaitEndsWhenWorkFails(t *testing.T) {
	p := &program{work: func(context.Context) error { return errors.New("enrolment refused") }}
	p.Start(nil)
	done := make(chan struct{})
	go func() { p.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return after the work failed")
	}
	p.Stop(nil)
	if p.err == nil {
		t.Error("no error")
	}
}

// fakeRoot is a machine where PID 1 is not systemd.
func fakeRoot(t *testing.T) string {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc/1"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/1/comm"), []byte("init\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "proc/4242"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/4242/cmdline"), []byte("/usr/bin/palisade-agent\x00run\x00"), 0o644)
	return root
}

func newManager(t *testing.T, root string) *Manager {
	m, err := New(Config{Name: "palisade-agent", Unit: systemd.Agent, ConfigFile: "/etc/palisade/agent.yaml", Root: root})
	if err != nil {
		t.Fatal(err)
	}
	m.Systemctl = func(args ...string) (string, error) {
		t.Errorf("systemctl %v called without systemd", args)
		return "", nil
	}
	return m
}

func TestWithoutSystemd_SaysSo(t *testing.T) {
	root := fakeRoot(t)
	m := newManager(t, root)
	var out bytes.Buffer
	st := m.Status(&out)
	if st.Unit != "" || st.Systemd || !st.Running() {
		t.Errorf("state %+v", st)
	}
	for _, want := range []string{"palisade-agent: not installed", `systemd is not running as PID 1 (PID 1 is "init")`, "process: running (pid 4242)", "config: /etc/palisade/agent.yaml (missing; defaults apply)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	for name, f := range map[string]func() error{"start": m.Start, "stop": m.Stop, "restart": m.Restart} {
		if err := f(); !errors.Is(err, ErrNoSystemd) || !strings.Contains(err.Error(), `PID 1 is "init"`) {
			t.Errorf("%s: %v", name, err)
		}
	}

	msg, err := m.Install()
	if err != nil || !strings.Contains(msg, "written but not enabled: systemd is not PID 1") {
		t.Fatalf("install: %q %v", msg, err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/palisade-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if !strings.Contains(string(unit), "ExecStart="+exe+" run\n") || !strings.Contains(string(unit), "CapabilityBoundingSet=CAP_BPF") {
		t.Errorf("unit:\n%s", unit)
	}
	out.Reset()
	if st := m.Status(&out); st.Unit != "/etc/systemd/system/palisade-agent.service" {
		t.Errorf("after install: %+v\n%s", st, out.String())
	}
	msg, err = m.Uninstall()
	if err != nil || !strings.Contains(msg, "removed /etc/systemd/system/palisade-agent.service") {
		t.Errorf("uninstall: %q %v", msg, err)
	}
	if _, err := m.Uninstall(); err == nil {
		t.Error("second uninstall: no error")
	}
}

func TestPackagedUnit_InstallLeavesItAlone(t *testing.T) {
	root := fakeRoot(t)
	os.MkdirAll(filepath.Join(root, "lib/systemd/system"), 0o755)
	os.WriteFile(filepath.Join(root, "lib/systemd/system/palisade-agent.service"), []byte(systemd.Agent), 0o644)
	m := newManager(t, root)
	msg, err := m.Install()
	if err != nil || !strings.Contains(msg, "(from the package) is installed but not enabled") {
		t.Errorf("install: %q %v", msg, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/system/palisade-agent.service")); err == nil {
		t.Error("install wrote a unit over the package's")
	}
	msg, err = m.Uninstall()
	if err != nil || !strings.Contains(msg, "belongs to the package") {
		t.Errorf("uninstall: %q %v", msg, err)
	}
}

func TestWithSystemd_AsksSystemctl(t *testing.T) {
	root := fakeRoot(t)
	os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755)
	os.MkdirAll(filepath.Join(root, "lib/systemd/system"), 0o755)
	os.WriteFile(filepath.Join(root, "lib/systemd/system/palisade-agent.service"), []byte(systemd.Agent), 0o644)
	m := newManager(t, root)
	var calls []string
	m.Systemctl = func(args ...string) (string, error) {
		calls = append(calls, strings.Join(args, " "))
		switch args[0] {
		case "is-active":
			return "active", nil
		case "is-enabled":
			return "enabled", nil
		}
		return "", nil
	}
	var out bytes.Buffer
	st := m.Status(&out)
	if !st.Running() || !strings.Contains(out.String(), "installed (/lib/systemd/system/palisade-agent.service), enabled, active") {
		t.Errorf("%+v\n%s", st, out.String())
	}
	if _, err := m.Install(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls, "; "); !strings.Contains(got, "enable palisade-agent.service") {
		t.Errorf("calls: %s", got)
	}
}

func TestUnitsRenderForAnotherPath(t *testing.T) {
	m := &Manager{c: Config{Name: "palisade-controller", Unit: systemd.Controller}}
	u := m.RenderUnit("/opt/palisade/palisade-controller")
	if !strings.Contains(u, "ExecStart=/opt/palisade/palisade-controller run\n") || strings.Contains(u, "/usr/bin/palisade-controller") {
		t.Errorf("unit:\n%s", u)
	}
}
