package rules

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/agent/proccache"
	"github.com/palisade-sec/palisade/internal/kernfs"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Config configures an Engine. Zero values take the defaults.
type Config struct {
	// HostID goes into every alert (events that carry one keep theirs).
	HostID string
	Logger *slog.Logger
	// ProcRoot is the procfs mount (default /proc).
	ProcRoot string
	// Scope is the enforcement scope, a cgroup v2 directory (e.g.
	// /sys/fs/cgroup/unified/palisade-demo). kill and kill_tree act only on
	// processes inside it. Empty: no restriction (a production agent
	// scoped to the root cgroup).
	Scope string
	// CgroupRoot is the cgroup v2 mount Scope lives under (default
	// /sys/fs/cgroup/unified, else /sys/fs/cgroup).
	CgroupRoot string
	// BootTime converts /proc start times for the pid-reuse check; pass
	// the sensor cache's BootTimeValue() so both use the same base
	// (default: proccache.BootTime() at NewEngine).
	BootTime time.Time
	// Block is the "block" response: deny the destination of a connect
	// event. The daemon wires it to the sensor. Nil: block responses fail.
	Block func(netip.Prefix) error
	// Agent describes the agent itself for the tampering rules.
	Agent AgentInfo
	// DownloadWindow is how long a file written by a downloader counts as
	// recently downloaded (default 10 minutes).
	DownloadWindow time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// AgentInfo is what the tampering rules protect: the agent's pid and
// executable, and paths (config file, state dir, BPF pin dir, binary)
// whose mention or opening by another process is suspicious.
type AgentInfo struct {
	PID   int
	Exe   string
	Paths []string
}

// Engine evaluates the active rule set on events. It is safe for
// concurrent use; Apply swaps rule sets atomically.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	env  *cel.Env
	prov *provider

	set       atomic.Pointer[ruleSet]
	keys      atomic.Pointer[hunt.KeySet]
	iocs      atomic.Pointer[iocSet]
	agent     atomic.Pointer[agentState]
	downloads *downloads

	// constant sets exposed to rules
	miningPorts, shells, downloaders ref.Val

	pool sync.Pool

	evaluated, matched, evalErrors, responses, responseErrors atomic.Uint64
}

// MiningPorts are typical mining-pool (stratum) ports; rules see them as
// the set mining_ports.
var MiningPorts = []int64{3333, 3334, 3357, 4444, 5555, 5556, 5588, 5730, 6099, 6666, 7777, 7778, 8899, 9332, 14433, 14444, 45560, 45700}

// Shells are the basenames rules see as the set shells.
var Shells = []string{"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox"}

// Downloaders are the basenames rules see as the set downloaders (and
// whose output files the engine remembers, see recently_downloaded).
var Downloaders = []string{"curl", "wget"}

// NewEngine builds the CEL environment (once) and an engine with no rules.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = kernfs.CgroupRoot()
	}
	if cfg.BootTime.IsZero() {
		cfg.BootTime = proccache.BootTime()
	}
	if cfg.DownloadWindow <= 0 {
		cfg.DownloadWindow = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := newProvider()
	if err != nil {
		return nil, fmt.Errorf("rules: type provider: %w", err)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "rules"), prov: p, downloads: newDownloads(1024, cfg.DownloadWindow)}
	e.env, err = newEnv(e, p)
	if err != nil {
		return nil, fmt.Errorf("rules: CEL environment: %w", err)
	}
	ports := map[ref.Val]ref.Val{}
	for _, pt := range MiningPorts {
		ports[types.Int(pt)] = types.True
	}
	e.miningPorts = types.NewRefValMap(p, ports)
	e.shells = types.NewRefValMap(p, setOf(Shells))
	e.downloaders = types.NewRefValMap(p, setOf(Downloaders))
	e.set.Store(&ruleSet{})
	e.iocs.Store(&iocSet{})
	e.SetAgent(cfg.Agent)
	e.pool.New = func() any { return &activation{} }
	return e, nil
}

func setOf(ss []string) map[ref.Val]ref.Val {
	m := map[ref.Val]ref.Val{}
	for _, s := range ss {
		m[types.String(s)] = types.True
	}
	return m
}

func (e *Engine) now() time.Time { return e.cfg.Now() }

// compiled is one rule ready to run.
type compiled struct {
	rule *palisadev1.Rule
	prg  cel.Program
}

// ruleSet is an immutable compiled rule set; byKind lists, per event
// kind, the rules that can match it (decided at Apply by partially
// evaluating each condition with only `kind` known).
type ruleSet struct {
	rules  []*compiled
	byKind map[string][]*compiled
}

// RuleError is a rule that did not compile.
type RuleError struct {
	Rule       string
	SourceFile string
	SourceLine int32
	Err        string
}

func (r RuleError) String() string {
	return fmt.Sprintf("%s:%d: rule %q: %s", r.SourceFile, r.SourceLine, r.Rule, r.Err)
}

// ApplyError lists every rule that failed; nothing of the set was applied.
type ApplyError struct {
	Problems []RuleError
}

func (e *ApplyError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("invalid rules (%d): %s", len(e.Problems), strings.Join(parts, "; "))
}

var knownResponses = map[string]bool{"": true, "none": true, "kill": true, "kill_tree": true, "block": true}

// Apply compiles rules (each once) and, only if every one compiles to a
// boolean condition, replaces the active set atomically. On error the
// previous set stays in force and the *ApplyError names each bad rule
// with its source file, line and the CEL error.
func (e *Engine) Apply(rules []*palisadev1.Rule) error {
	var problems []RuleError
	set := &ruleSet{byKind: map[string][]*compiled{}}
	names := map[string]bool{}
	for _, r := range rules {
		bad := func(format string, args ...any) {
			problems = append(problems, RuleError{Rule: r.GetName(), SourceFile: r.GetSourceFile(), SourceLine: r.GetSourceLine(), Err: fmt.Sprintf(format, args...)})
		}
		if r.GetName() == "" {
			bad("rule has no name")
			continue
		}
		if names[r.GetName()] {
			bad("duplicate rule name")
			continue
		}
		names[r.GetName()] = true
		if !knownResponses[r.GetResponse()] {
			bad("unknown response %q", r.GetResponse())
			continue
		}
		c, err := e.compile(r)
		if err != nil {
			bad("%v", err)
			continue
		}
		set.rules = append(set.rules, c)
		for _, k := range e.kindsOf(c) {
			set.byKind[k] = append(set.byKind[k], c)
		}
	}
	if len(problems) > 0 {
		return &ApplyError{Problems: problems}
	}
	e.set.Store(set)
	e.log.Info("rules applied", "rules", len(set.rules))
	return nil
}

func (e *Engine) compile(r *palisadev1.Rule) (*compiled, error) {
	ast, iss := e.env.Compile(r.GetCondition())
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != types.BoolType {
		return nil, fmt.Errorf("condition is %s, want bool", ast.OutputType())
	}
	prg, err := e.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &compiled{rule: r, prg: prg}, nil
}

// kindsOf decides which event kinds a rule can match: the condition is
// evaluated with only `kind` known; a definite false for a kind means the
// rule never needs to run on events of that kind. Anything else (true,
// unknown, an error) keeps the kind.
func (e *Engine) kindsOf(c *compiled) []string {
	ast, iss := e.env.Compile(c.rule.GetCondition())
	if iss.Err() != nil {
		return kinds
	}
	prg, err := e.env.Program(ast, cel.EvalOptions(cel.OptPartialEval))
	if err != nil {
		return kinds
	}
	var out []string
	for _, k := range kinds {
		vars, err := cel.PartialVars(map[string]any{"kind": k},
			cel.AttributePattern("process"), cel.AttributePattern("exec"), cel.AttributePattern("exit"), cel.AttributePattern("file"),
			cel.AttributePattern("connect"), cel.AttributePattern("agent"), cel.AttributePattern("mining_ports"),
			cel.AttributePattern("shells"), cel.AttributePattern("downloaders"), cel.AttributePattern("leaked_keys_active"))
		if err != nil {
			return kinds
		}
		v, _, _ := prg.Eval(vars)
		if v == types.False {
			continue
		}
		out = append(out, k)
	}
	return out
}

// Rules returns the active rules.
func (e *Engine) Rules() []*palisadev1.Rule {
	set := e.set.Load()
	out := make([]*palisadev1.Rule, len(set.rules))
	for i, c := range set.rules {
		out[i] = c.rule
	}
	return out
}

// Stats are the engine's counters.
type Stats struct {
	Evaluated, Matched, EvalErrors, Responses, ResponseErrors uint64
}

// Stats reads the counters.
func (e *Engine) Stats() Stats {
	return Stats{e.evaluated.Load(), e.matched.Load(), e.evalErrors.Load(), e.responses.Load(), e.responseErrors.Load()}
}

// activation is one event as the rules see it.
type activation struct {
	eng  *Engine
	kind types.String
	proc procView
	exec execView
	exit exitView
	file fileView
	conn connectView
}

func (a *activation) reset(e *Engine, ev *palisadev1.Event, kind string) {
	*a = activation{eng: e, kind: types.String(kind)}
	a.proc = procView{a: a, p: ev.GetProcess()}
	a.exec.e = ev.GetExec()
	a.exit.e = ev.GetExit()
	a.file.f = ev.GetFileOpen()
	a.conn.c = ev.GetConnect()
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "kind":
		return a.kind, true
	case "process":
		return &a.proc, true
	case "exec":
		return &a.exec, true
	case "exit":
		return &a.exit, true
	case "file":
		return &a.file, true
	case "connect":
		return &a.conn, true
	case "agent":
		return a.eng.agent.Load(), true
	case "mining_ports":
		return a.eng.miningPorts, true
	case "shells":
		return a.eng.shells, true
	case "downloaders":
		return a.eng.downloaders, true
	case "leaked_keys_active":
		return types.Bool(a.eng.keys.Load().Len() > 0), true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// Evaluate runs the rules that apply to ev's kind and returns an alert per
// match. In enforce mode the rule's response is taken before Evaluate
// returns (kill, kill_tree, block) and recorded in the alert. Evaluate
// also feeds the engine's own state (files written by downloaders), so
// call it on every event, in order.
func (e *Engine) Evaluate(ev *palisadev1.Event) []*palisadev1.Alert {
	kind := kindOf(ev)
	if kind == "exec" {
		e.observeExec(ev)
	}
	cands := e.set.Load().byKind[kind]
	if len(cands) == 0 {
		return nil
	}
	e.evaluated.Add(1)
	a := e.pool.Get().(*activation)
	a.reset(e, ev, kind)
	var alerts []*palisadev1.Alert
	for _, c := range cands {
		out, _, err := c.prg.Eval(a)
		if err != nil {
			e.evalErrors.Add(1)
			e.log.Debug("rule evaluation failed", "rule", c.rule.GetName(), "err", err)
			continue
		}
		if out == types.True {
			e.matched.Add(1)
			alerts = append(alerts, e.alert(c.rule, ev, a))
		}
	}
	*a = activation{}
	e.pool.Put(a)
	for _, al := range alerts {
		e.respond(al)
	}
	return alerts
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// alert builds the alert for a match, with context labels: the ancestry
// chain, and what the /proc-derived fields saw.
func (e *Engine) alert(r *palisadev1.Rule, ev *palisadev1.Event, a *activation) *palisadev1.Alert {
	host := ev.GetHostId()
	if host == "" {
		host = e.cfg.HostID
	}
	mode := r.GetMode()
	if mode == palisadev1.Mode_MODE_UNSPECIFIED {
		mode = palisadev1.Mode_MODE_ENFORCE
	}
	resp := r.GetResponse()
	if resp == "none" {
		resp = ""
	}
	al := &palisadev1.Alert{
		Id: newID(), HostId: host, Time: timestamppb.New(e.now()),
		Rule: r.GetName(), Severity: r.GetSeverity(), Description: r.GetDescription(),
		Mode: mode, Event: ev, Response: resp, Labels: map[string]string{},
	}
	p := ev.GetProcess()
	if p != nil {
		al.Labels["process"] = fmt.Sprintf("%s(%d)", p.GetExePath(), p.GetPid())
		if chain := ancestryLabel(p); chain != "" {
			al.Labels["ancestry"] = chain
		}
		if len(p.GetArgv()) > 0 {
			al.Labels["argv"] = e.maskKeys(strings.Join(p.GetArgv(), " "))
		}
	}
	if a.proc.fdDone {
		if a.proc.fd.stdin != "" {
			al.Labels["stdin"] = a.proc.fd.stdin
		}
		if a.proc.fd.stdout != "" {
			al.Labels["stdout"] = a.proc.fd.stdout
		}
	}
	if a.proc.delDone && a.proc.deleted {
		al.Labels["exe_deleted"] = "true"
	}
	if d, ok := e.downloads.lookup(p.GetExePath(), e.now()); ok {
		al.Labels["downloaded_by"] = d.by
		al.Labels["downloaded_ago"] = e.now().Sub(d.at).Round(time.Millisecond).String()
	}
	if keys := e.keys.Load(); keys.Len() > 0 && kindOf(ev) == "exec" {
		var found, sums []string
		for _, arg := range p.GetArgv() {
			for _, m := range keys.Find(arg) {
				found = append(found, m.Masked+" in argv")
				sums = append(sums, m.SHA256)
			}
		}
		env := a.proc.env
		if env != nil {
			ss, _ := stringsOf(env)
			for _, kv := range ss {
				for _, m := range keys.Find(kv) {
					name, _, _ := strings.Cut(kv, "=")
					found = append(found, m.Masked+" in env "+name)
					sums = append(sums, m.SHA256)
				}
			}
		}
		if len(found) > 0 {
			// The alert travels and is stored: it carries the key masked.
			masked := proto.Clone(ev).(*palisadev1.Event)
			for i, arg := range masked.GetProcess().GetArgv() {
				masked.Process.Argv[i] = e.maskKeys(arg)
			}
			for _, anc := range masked.GetProcess().GetAncestry() {
				for i, arg := range anc.GetArgv() {
					anc.Argv[i] = e.maskKeys(arg)
				}
			}
			al.Event = masked
			slices.Sort(found)
			al.Labels["leaked_key"] = strings.Join(slices.Compact(found), ", ")
			slices.Sort(sums)
			// The hash ties the alert to the controller's leaked-credential record.
			al.Labels["key_sha256"] = strings.Join(slices.Compact(sums), ",")
		}
	}
	return al
}

// maskKeys masks leaked key ids in s (argv labels must not carry them).
func (e *Engine) maskKeys(s string) string {
	keys := e.keys.Load()
	ms := keys.Find(s)
	if len(ms) == 0 {
		return s
	}
	// Replace each occurrence by its masked form, from the end so offsets hold.
	slices.SortFunc(ms, func(x, y hunt.Match) int { return y.Offset - x.Offset })
	out := s
	for _, m := range ms {
		end := m.Offset
		for end < len(out) && isKeyChar(out[end]) {
			end++
		}
		out = out[:m.Offset] + m.Masked + out[end:]
	}
	return out
}

func isKeyChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

func ancestryLabel(p *palisadev1.Process) string {
	var parts []string
	for _, a := range p.GetAncestry() {
		parts = append(parts, fmt.Sprintf("%s(%d)", path.Base(a.GetExePath()), a.GetPid()))
	}
	return strings.Join(parts, " <- ")
}

// respond takes the alert's response when its rule runs in enforce mode.
func (e *Engine) respond(al *palisadev1.Alert) {
	if al.GetResponse() == "" || al.GetMode() != palisadev1.Mode_MODE_ENFORCE {
		return
	}
	e.responses.Add(1)
	ev := al.GetEvent()
	var err error
	switch al.GetResponse() {
	case "kill", "kill_tree":
		if ev.Verdict() == palisadev1.Verdict_VERDICT_KILLED {
			al.ResponseTaken = true
			al.Labels["response_note"] = "already killed in the kernel"
			return
		}
		p := ev.GetProcess()
		var start time.Time
		if p.GetStartTime() != nil {
			start = p.GetStartTime().AsTime()
		}
		var n int
		n, err = e.KillProcess(p.GetPid(), start, al.GetResponse() == "kill_tree")
		if n > 0 {
			al.Labels["killed"] = strconv.Itoa(n)
		}
	case "block":
		err = e.block(ev)
	}
	if err != nil {
		e.responseErrors.Add(1)
		al.ResponseError = err.Error()
		e.log.Warn("rule response failed", "rule", al.GetRule(), "response", al.GetResponse(), "err", err)
		return
	}
	al.ResponseTaken = true
}

func (e *Engine) block(ev *palisadev1.Event) error {
	c := ev.GetConnect()
	if c == nil {
		return errors.New("block: the event has no destination")
	}
	addr, err := netip.ParseAddr(c.GetDstAddr())
	if err != nil {
		return fmt.Errorf("block: %w", err)
	}
	addr = addr.Unmap()
	if addr.IsLoopback() && e.cfg.Scope == "" {
		return fmt.Errorf("block: refusing to block loopback address %s", addr)
	}
	if e.cfg.Block == nil {
		return errors.New("block: no blocker configured")
	}
	return e.cfg.Block(netip.PrefixFrom(addr, addr.BitLen()))
}

// SetLeakedKeys replaces the leaked key ids rules look for
// (has_leaked_key, leaked_keys_active). nil clears them.
func (e *Engine) SetLeakedKeys(ks *hunt.KeySet) { e.keys.Store(ks) }

func (e *Engine) hasLeakedKey(ss []string) bool {
	keys := e.keys.Load()
	if keys.Len() == 0 {
		return false
	}
	for _, s := range ss {
		if keys.Contains(s) {
			return true
		}
	}
	return false
}

// SetAgent replaces what the tampering rules know about the agent.
func (e *Engine) SetAgent(info AgentInfo) {
	st := &agentState{info: info}
	for _, p := range info.Paths {
		if p = filepath.Clean(p); filepath.IsAbs(p) && p != "/" {
			st.clean = append(st.clean, p)
		}
	}
	if info.Exe != "" {
		st.clean = append(st.clean, filepath.Clean(info.Exe))
	}
	if info.PID > 0 {
		st.pid = strconv.Itoa(info.PID)
	}
	st.paths = types.NewStringList(types.DefaultTypeAdapter, st.clean)
	e.agent.Store(st)
}

type agentState struct {
	info  AgentInfo
	clean []string
	pid   string
	paths ref.Val
}

// isAgentPath: p is one of the agent's paths or inside one.
func (s *agentState) isAgentPath(p string) bool {
	if p == "" {
		return false
	}
	p = filepath.Clean(p)
	for _, a := range s.clean {
		if strings.HasPrefix(p, a) && (len(p) == len(a) || p[len(a)] == '/') {
			return true
		}
	}
	return false
}

// mentioned: some argument names an agent path (or a path inside one),
// or a kill-type command names the agent's pid or binary.
func (s *agentState) mentioned(args []string) bool {
	if len(s.clean) == 0 && s.pid == "" {
		return false
	}
	killer := false
	if len(args) > 0 {
		switch path.Base(args[0]) {
		case "kill", "pkill", "killall", "skill":
			killer = true
		}
	}
	for i, a := range args {
		if i == 0 {
			continue
		}
		for _, p := range s.clean {
			if j := strings.Index(a, p); j >= 0 {
				rest := a[j+len(p):]
				if rest == "" || rest[0] == '/' || rest[0] == ' ' || rest[0] == '\'' || rest[0] == '"' {
					return true
				}
			}
		}
		if killer && (a == s.pid || strings.Contains(a, "palisade")) {
			return true
		}
	}
	return false
}
