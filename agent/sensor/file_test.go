package sensor_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/agent/sensor"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// credEnv protects a file the test created; cat (not a reader) and a copy
// of cat in the temp dir (the reader) open it.
type credEnv struct {
	*env
	dir, secret, cat, reader string
}

func newCredEnv(t *testing.T, mode palisadev1.Mode) *credEnv {
	e := newEnv(t)
	dir := t.TempDir()
	c := &credEnv{env: e, dir: dir, secret: filepath.Join(dir, "credentials"), cat: lookPath(t, "cat")}
	if err := os.WriteFile(c.secret, []byte("AKIASECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.reader = copyFile(t, c.cat, filepath.Join(dir, "reader-cat"))
	e.apply(&sensor.Resolved{Files: []sensor.FileRule{{
		ID: fileID(t, c.secret), Path: c.secret, Rule: "protected_files[0]",
		Readers: []sensor.FileID{fileID(t, c.reader)}, Mode: mode,
	}}})
	return c
}

func TestFiles_NonReaderKilled_AllAccessPaths(t *testing.T) {
	c := newCredEnv(t, palisadev1.Mode_MODE_ENFORCE)
	link := filepath.Join(c.dir, "link-to-credentials")
	if err := os.Symlink(c.secret, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(c.dir, "hardlink")
	if err := os.Link(c.secret, hard); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"direct path": {c.cat, c.secret},
		"symlink":     {c.cat, link},
		"hard link":   {c.cat, hard},
		// cd into the directory and open by a relative name
		"relative path": {"/bin/sh", "-c", "cd " + c.dir + " && exec " + c.cat + " ./credentials"},
	}
	for name, argv := range cases {
		t.Run(name, func(t *testing.T) {
			out, sig, err := c.run(argv[0], argv[1:]...)
			if err != nil || sig != syscall.SIGKILL {
				t.Fatalf("signal %v err %v out %q, want SIGKILL", sig, err, out)
			}
			if strings.Contains(out, "AKIA") {
				t.Fatalf("secret leaked: %q", out)
			}
		})
	}
	out, sig, err := c.run(c.reader, c.secret)
	if err != nil || sig != 0 || out != "AKIASECRET\n" {
		t.Fatalf("allowed reader: out %q signal %v err %v", out, sig, err)
	}
	ev := c.log.wait(t, "file kill", func(ev *palisadev1.Event) bool {
		return ev.GetFileOpen().GetVerdict() == palisadev1.Verdict_VERDICT_KILLED
	})
	fo := ev.GetFileOpen()
	if fo.GetPath() != c.secret || fo.GetRule() != "protected_files[0]" || ev.GetProcess().GetExePath() != c.cat {
		t.Errorf("event = %v", ev)
	}
	c.log.wait(t, "allowed read", func(ev *palisadev1.Event) bool {
		return ev.GetFileOpen().GetVerdict() == palisadev1.Verdict_VERDICT_ALLOWED &&
			ev.GetProcess().GetExePath() == c.reader
	})
}

func TestFiles_AuditModeReportsWithoutKilling(t *testing.T) {
	c := newCredEnv(t, palisadev1.Mode_MODE_AUDIT)
	out, sig, err := c.run(c.cat, c.secret)
	if err != nil || sig != 0 || out != "AKIASECRET\n" {
		t.Fatalf("audited read: out %q signal %v err %v", out, sig, err)
	}
	c.log.wait(t, "audited open", func(ev *palisadev1.Event) bool {
		return ev.GetFileOpen().GetVerdict() == palisadev1.Verdict_VERDICT_AUDITED &&
			ev.GetProcess().GetExePath() == c.cat
	})
}

// Opens of other files are not reported and not killed.
func TestFiles_UnprotectedFileUntouched(t *testing.T) {
	c := newCredEnv(t, palisadev1.Mode_MODE_ENFORCE)
	other := filepath.Join(c.dir, "other")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, sig, err := c.run(c.cat, other); err != nil || sig != 0 || out != "x" {
		t.Fatalf("out %q signal %v err %v", out, sig, err)
	}
}

// A script is stopped by protecting it as a file with no readers: its
// interpreter's open of it is killed (exec.deny sees only the interpreter).
func TestFiles_ProtectedScriptCannotRun(t *testing.T) {
	e := newEnv(t)
	script := filepath.Join(t.TempDir(), "miner.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho mined\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.apply(&sensor.Resolved{Files: []sensor.FileRule{{ID: fileID(t, script), Path: script, Mode: palisadev1.Mode_MODE_ENFORCE}}})
	out, sig, err := e.run(script)
	if err != nil || sig != syscall.SIGKILL || strings.Contains(out, "mined") {
		t.Fatalf("script: out %q signal %v err %v, want SIGKILL", out, sig, err)
	}
}
