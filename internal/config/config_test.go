package config_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/config"
)

// Config fields that are main's own (they configure the logger).
var binaryOnly = map[string]bool{"LogLevel": true, "LogFormat": true}

// notConfig: fields of daemon.Config / server.Config that code injects
// rather than an operator configures: loggers, hooks (OnIngestEvents),
// channels, interfaces.
func notConfig(f reflect.StructField) bool {
	switch f.Type.Kind() {
	case reflect.Func, reflect.Chan, reflect.Interface, reflect.Pointer:
		return true
	}
	return !f.IsExported()
}

func checkCovers(t *testing.T, cfg any, target any, targetName string) {
	t.Helper()
	ct := reflect.TypeOf(cfg).Elem()
	tt := reflect.TypeOf(target).Elem()
	for i := range tt.NumField() {
		f := tt.Field(i)
		if notConfig(f) {
			continue
		}
		cf, ok := ct.FieldByName(f.Name)
		if !ok {
			t.Errorf("%s.%s (%s) has no configuration key: add a line to config.%s, e.g.\n\t%s %s `yaml:\"%s\" usage:\"...\"`",
				targetName, f.Name, f.Type, ct.Name(), f.Name, f.Type, snake(f.Name))
			continue
		}
		if !cf.Type.ConvertibleTo(f.Type) {
			t.Errorf("config.%s.%s is %s but %s.%s is %s", ct.Name(), f.Name, cf.Type, targetName, f.Name, f.Type)
		}
	}
	for i := range ct.NumField() {
		f := ct.Field(i)
		if _, ok := tt.FieldByName(f.Name); !ok && !binaryOnly[f.Name] {
			t.Errorf("config.%s.%s matches no field of %s (renamed?): it would be silently ignored", ct.Name(), f.Name, targetName)
		}
	}
	// Every field registers (supported type, key present) and keys are unique.
	keys := map[string]bool{}
	for _, f := range config.Fields(cfg) {
		if keys[f.Key] {
			t.Errorf("key %s used twice", f.Key)
		}
		keys[f.Key] = true
		if f.Usage == "" {
			t.Errorf("key %s has no usage text", f.Key)
		}
	}
}

func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && (s[i-1] < 'A' || s[i-1] > 'Z') {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func TestAgentCoversDaemonConfig(t *testing.T) {
	checkCovers(t, &config.Agent{}, &daemon.Config{}, "daemon.Config")
}

func TestControllerCoversServerConfig(t *testing.T) {
	checkCovers(t, &config.Controller{}, &server.Config{}, "server.Config")
}

func TestAgentDefaultsMatchDaemon(t *testing.T) {
	var a config.Agent
	b := bind(t, &a, nil, "")
	if err := b.Load(); err != nil {
		t.Fatal(err)
	}
	if a.HeartbeatInterval != heartbeat.DefaultInterval {
		t.Errorf("heartbeat_interval default %v, heartbeat.DefaultInterval %v", a.HeartbeatInterval, heartbeat.DefaultInterval)
	}
}

// bind makes a Binding over cfg with a fake environment and a config file
// holding yaml (none when yaml is "").
func bind(t *testing.T, cfg any, env map[string]string, yaml string, args ...string) *config.Binding {
	t.Helper()
	spec := config.Spec{Name: "agent", DefaultPath: filepath.Join(t.TempDir(), "agent.yaml")}
	if _, ok := cfg.(*config.Controller); ok {
		spec.Name = "controller"
	}
	if yaml != "" {
		if err := os.WriteFile(spec.DefaultPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := config.Bind(fs, spec, cfg)
	b.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPrecedence_FlagsOverEnvOverFileOverDefaults(t *testing.T) {
	file := "state_dir: /file/state\ncontroller: http://file:8080\nheartbeat_interval: 30s\nlog_level: warn\n"
	env := map[string]string{
		"PALISADE_AGENT_CONTROLLER":         "http://env:8080",
		"PALISADE_AGENT_HEARTBEAT_INTERVAL": "20s",
	}
	var a config.Agent
	b := bind(t, &a, env, file, "--heartbeat-interval", "5s")
	if err := b.Load(); err != nil {
		t.Fatal(err)
	}
	want := config.Agent{
		StateDir:          "/file/state",     // file over default
		ControllerURL:     "http://env:8080", // env over file
		HeartbeatInterval: 5 * time.Second,   // flag over env over file
		LogLevel:          "warn",
		LogFormat:         "text", // default
		SpoolBytes:        256 << 20,
	}
	if a != want {
		t.Errorf("got %+v\nwant %+v", a, want)
	}
	src := b.Sources()
	for key, where := range map[string]string{
		"state_dir": b.File(), "controller": "env PALISADE_AGENT_CONTROLLER",
		"heartbeat_interval": "flag --heartbeat-interval", "log_format": "default",
	} {
		if src[key].Where != where {
			t.Errorf("source of %s = %q, want %q", key, src[key].Where, where)
		}
	}
}

func TestConfigPath_FlagThenEnvThenDefault(t *testing.T) {
	dir := t.TempDir()
	fromEnv := filepath.Join(dir, "env.yaml")
	fromFlag := filepath.Join(dir, "flag.yaml")
	os.WriteFile(fromEnv, []byte("state_dir: /from/env\n"), 0o600)
	os.WriteFile(fromFlag, []byte("state_dir: /from/flag\n"), 0o600)
	env := map[string]string{"PALISADE_AGENT_CONFIG": fromEnv}

	var a config.Agent
	if err := bind(t, &a, env, "", "--config", fromFlag).Load(); err != nil || a.StateDir != "/from/flag" {
		t.Errorf("--config: %v, state_dir %q", err, a.StateDir)
	}
	if err := bind(t, &a, env, "").Load(); err != nil || a.StateDir != "/from/env" {
		t.Errorf("env: %v, state_dir %q", err, a.StateDir)
	}
	// A missing default file is fine; a missing named one is not.
	if err := bind(t, &a, nil, "").Load(); err != nil {
		t.Errorf("missing default file: %v", err)
	}
	if err := bind(t, &a, nil, "", "--config", filepath.Join(dir, "nope.yaml")).Load(); err == nil {
		t.Error("missing --config file: no error")
	}
	b := bind(t, &a, nil, "", "--config", filepath.Join(dir, "new.yaml"), "--state-dir", "/new")
	b.MissingOK = true // install and enroll create the file
	if err := b.Load(); err != nil {
		t.Errorf("MissingOK: %v", err)
	}
	if path, _, err := b.WriteFlags(); err != nil || path != filepath.Join(dir, "new.yaml") {
		t.Errorf("write new file: %v", err)
	}
}

func TestFile_UnknownKeysByNameAndLine(t *testing.T) {
	file := "# comment\nstate_dir: /s\ncontroler: http://x:1\nbogus: 1\nstate_dir: /t\n"
	var a config.Agent
	err := bind(t, &a, nil, file).Load()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`:3: controler: unknown key (did you mean "controller"?)`,
		`:4: bogus: unknown key (known keys: ca_file, cgroup, controller,`,
		`:5: state_dir: duplicate key (first on line 2)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if n := len(err.(config.Problems)); n != 3 {
		t.Errorf("%d problems, want 3:\n%s", n, msg)
	}
	// Values that parse are still validated next to unknown keys.
	err = bind(t, &a, nil, "bogus: 1\nstate_dir: rel\n").Load()
	if err == nil || !strings.Contains(err.Error(), `:2: state_dir: "rel" is not an absolute path`) {
		t.Errorf("validation beside an unknown key: %v", err)
	}
	if n := len(err.(config.Problems)); n != 2 {
		t.Errorf("%d problems, want 3:\n%s", n, msg)
	}
}

func TestFile_TypeErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"heartbeat_interval: soon\n", `:1: heartbeat_interval: "soon" is not a duration`},
		{"heartbeat_interval: -5s\n", `may not be negative`},
		{"state_dir: [a, b]\n", `:1: state_dir: want a single value, not a list`},
		{"state_dir: relative/dir\n", `:1: state_dir: "relative/dir" is not an absolute path`},
		{"controller: 10.0.0.5:8080\n", `:1: controller: "10.0.0.5:8080" is not an http(s) URL`},
		{"log_level: loud\n", `:1: log_level: "loud": want debug, info, warn or error`},
		{"- a\n- b\n", `want a mapping`},
		{"state_dir: [\n", `did not find expected node content`},
	}
	for _, c := range cases {
		var a config.Agent
		err := bind(t, &a, nil, c.yaml).Load()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestEnvAndFlagErrorsNameTheirSource(t *testing.T) {
	var a config.Agent
	err := bind(t, &a, map[string]string{"PALISADE_AGENT_HEARTBEAT_INTERVAL": "x"}, "").Load()
	if err == nil || !strings.Contains(err.Error(), "env PALISADE_AGENT_HEARTBEAT_INTERVAL: heartbeat_interval: \"x\" is not a duration") {
		t.Errorf("env: %v", err)
	}
	err = bind(t, &a, nil, "", "--state-dir", "rel").Load()
	if err == nil || !strings.Contains(err.Error(), `flag --state-dir: state_dir: "rel" is not an absolute path`) {
		t.Errorf("flag: %v", err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config.Bind(fs, config.AgentSpec, &a)
	if err := fs.Parse([]string{"--heartbeat-interval", "x"}); err == nil {
		t.Error("bad flag value accepted by Parse")
	}
}

func TestController_RequiresNodeIDAndListsAll(t *testing.T) {
	var c config.Controller
	err := bind(t, &c, nil, "api_addr: nope\nraft_addr: 10.0.0.1:7000\nbootstrap: true\n").Load()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"node_id: required", `:1: api_addr: "nope" is not host:port`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	err = bind(t, &c, map[string]string{"PALISADE_CONTROLLER_NODE_ID": "n1"}, "bootstrap: true\n").Load()
	if err != nil || c.NodeID != "n1" || !c.Bootstrap {
		t.Errorf("err %v, %+v", err, c)
	}
}

func TestLoadFile_IgnoresEnvAndFlags(t *testing.T) {
	var a config.Agent
	b := bind(t, &a, map[string]string{"PALISADE_AGENT_STATE_DIR": "rel"}, "state_dir: /f\n", "--cgroup", "rel")
	if err := b.LoadFile(); err != nil || a.StateDir != "/f" || a.CgroupPath != "" {
		t.Errorf("err %v, %+v", err, a)
	}
}

func TestInto_CopiesByName(t *testing.T) {
	c := config.Controller{NodeID: "n1", DataDir: "/d", Bootstrap: true, RaftElectionTimeout: time.Second, LogLevel: "debug"}
	var s server.Config
	config.Into(&s, &c)
	if s.NodeID != "n1" || s.DataDir != "/d" || !s.Bootstrap || s.RaftElectionTimeout != time.Second {
		t.Errorf("%+v", s)
	}
}

func TestWriteFlags_KeepsCommentsAndOtherKeys(t *testing.T) {
	file := "# Palisade agent\n# controller: http://example:8080\nstate_dir: /var/lib/x # where\nlog_level: info\n"
	var a config.Agent
	b := bind(t, &a, nil, file, "--controller", "http://10.0.0.5:8080", "--log-level", "debug", "--enroll-token", "secret")
	if err := b.Load(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(b.File(), 0o644)
	path, written, err := b.WriteFlags("enroll_token")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(written, ",") != "controller,log_level" {
		t.Errorf("written %v", written)
	}
	out, _ := os.ReadFile(path)
	got := string(out)
	for _, want := range []string{"# Palisade agent", "state_dir: /var/lib/x # where", "log_level: debug", "controller: http://10.0.0.5:8080"} {
		if !strings.Contains(got, want) {
			t.Errorf("file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret") {
		t.Errorf("skipped key written:\n%s", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want the file's 0644 kept", st.Mode())
	}
	// The written file loads back to the same values.
	var back config.Agent
	if err := bind(t, &back, nil, got).Load(); err != nil || back.ControllerURL != "http://10.0.0.5:8080" || back.LogLevel != "debug" {
		t.Errorf("reload: %v %+v", err, back)
	}
}

func TestWriteFlags_NewFileAndTypes(t *testing.T) {
	var c config.Controller
	b := bind(t, &c, nil, "", "--node-id", "n1", "--bootstrap", "--raft-election-timeout", "2s")
	if err := b.Load(); err != nil {
		t.Fatal(err)
	}
	path, _, err := b.WriteFlags()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(path)
	if string(out) != "node_id: n1\nbootstrap: true\nraft_election_timeout: 2s\n" {
		t.Errorf("got:\n%s", out)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("new file mode %v, want 0640", st.Mode())
	}
}

func TestListField(t *testing.T) {
	type withList struct {
		Join []string `yaml:"join" usage:"peers"`
	}
	var w withList
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	spec := config.Spec{Name: "x", DefaultPath: filepath.Join(t.TempDir(), "x.yaml")}
	os.WriteFile(spec.DefaultPath, []byte("join: [a, b]\n"), 0o600)
	b := config.Bind(fs, spec, &w)
	b.LookupEnv = func(string) (string, bool) { return "", false }
	fs.Parse(nil)
	if err := b.Load(); err != nil || strings.Join(w.Join, ",") != "a,b" {
		t.Errorf("file: %v %v", err, w.Join)
	}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	b = config.Bind(fs2, spec, &w)
	b.LookupEnv = func(k string) (string, bool) { return "e1,e2", k == "PALISADE_X_JOIN" }
	fs2.Parse([]string{"--join", "c,d", "--join", "e"})
	if err := b.Load(); err != nil || strings.Join(w.Join, ",") != "c,d,e" {
		t.Errorf("flags: %v %v", err, w.Join)
	}
}
