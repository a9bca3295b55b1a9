package svc

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/internal/config"
)

func testCLI(t *testing.T) (CLI, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	spec := config.Spec{Name: "agent", DefaultPath: filepath.Join(t.TempDir(), "agent.yaml")}
	return CLI{Service: Config{Name: "palisade-agent"}, Spec: spec,
		NewConfig: func() any { return &config.Agent{} }, Stdout: &out, Stderr: &errb}, &out, &errb
}

func TestConfigCheck_ReportsEveryProblemAndFails(t *testing.T) {
	c, out, _ := testCLI(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("state_dir: /ok\nheartbeat_interval: soon\ncontroler: http://x\n"), 0o600)
	if code := c.Main("config", []string{"check", "--config", bad}); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		bad + ": 2 problem(s):",
		bad + `:2: heartbeat_interval: "soon" is not a duration`,
		bad + `:3: controler: unknown key (did you mean "controller"?)`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigCheck_GoodFileAndMissingDefault(t *testing.T) {
	c, out, _ := testCLI(t)
	if code := c.Main("config", []string{"check"}); code != 0 || !strings.Contains(out.String(), "no such file (defaults apply and are valid)") {
		t.Errorf("missing default: exit %d\n%s", code, out.String())
	}
	out.Reset()
	os.WriteFile(c.Spec.DefaultPath, []byte("controller: http://10.0.0.5:8080\n"), 0o600)
	// The environment is not part of the file: a bad variable does not fail the check.
	t.Setenv("PALISADE_AGENT_STATE_DIR", "relative")
	if code := c.Main("config", []string{"check"}); code != 0 || !strings.Contains(out.String(), ": ok") {
		t.Errorf("good file: exit %d\n%s", code, out.String())
	}
	if code := c.Main("config", []string{"check", "--state-dir", "/x"}); code != 1 {
		t.Errorf("config check with a non-config flag: exit %d", code)
	}
	if code := c.Main("config", nil); code != 2 {
		t.Errorf("config with no subcommand: exit %d", code)
	}
}
