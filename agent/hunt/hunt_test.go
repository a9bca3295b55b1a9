package hunt

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/internal/bpftest"
)

const (
	key1 = "AKIAIOSFODNN7EXAMPLE"
	key2 = "LTAI5tQ8ZkWk3xNdP9yVbR2m"
)

func keySet(t *testing.T, ids ...string) *KeySet {
	t.Helper()
	var ks []Key
	for _, id := range ids {
		ks = append(ks, Key{ID: id})
	}
	s, err := NewKeySet(ks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeySet_FindAndMask(t *testing.T) {
	s := keySet(t, key1, key2)
	text := "a=" + key1 + "\nb=X" + key1 + "\nc=" + key1 + "Z\n\"" + key2 + "\""
	ms := s.Find(text)
	if len(ms) != 2 || ms[0].Masked != "AKIA****MPLE" || ms[1].Masked != "LTAI****bR2m" {
		t.Fatalf("matches %+v", ms)
	}
	if Mask("short") != "shor****" || Mask("abc") != "****" {
		t.Error("mask of short ids")
	}
	// a key known only by digest, prefix and length (the controller's record)
	d, err := NewKeySet([]Key{{SHA256: Digest(key1), Prefix: "AKIA", Length: len(key1), Masked: "AKIA****MPLE"}})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Contains("export K="+key1) || d.Contains("export K=AKIAIOSFODNN7EXAMPLF") {
		t.Error("digest-only key set")
	}
	if _, err := NewKeySet([]Key{{ID: "AKIA"}}); err == nil {
		t.Error("accepted a 4-character key id")
	}
	var nilSet *KeySet
	if nilSet.Contains(key1) || nilSet.Len() != 0 {
		t.Error("nil set matched")
	}
}

func TestHunt_Files(t *testing.T) {
	dir := t.TempDir()
	cred := filepath.Join(dir, "home", "alice", ".aws", "credentials")
	if err := os.MkdirAll(filepath.Dir(cred), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cred, []byte("[default]\naws_access_key_id = "+key1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proj := filepath.Join(dir, "srv", "app")
	if err := os.MkdirAll(filepath.Join(proj, "deep", "er"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, "deep", "er", ".env"), []byte("X=1\nALIBABA_CLOUD_ACCESS_KEY_ID="+key2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// a symlink inside a searched directory is not followed (to /proc or anywhere)
	if err := os.Symlink("/proc/self/environ", filepath.Join(proj, "env-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cred, filepath.Join(proj, "cred-link")); err != nil {
		t.Fatal(err)
	}
	// a big file is read up to the bound only
	big := strings.Repeat("x", 2048) + key1
	if err := os.WriteFile(filepath.Join(proj, "big.log"), []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	// a FIFO must not block the hunt
	if err := mkfifo(filepath.Join(proj, "fifo")); err != nil {
		t.Fatal(err)
	}
	res, err := Hunt(context.Background(), Config{
		HostID: "h1", Paths: []string{filepath.Join(dir, "home", "*", ".aws", "credentials")}, Dirs: []string{proj, "/proc"},
		MaxFileSize: 1024, ProcRoot: t.TempDir(), Logger: quiet(),
	}, keySet(t, key1, key2))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range res.Findings {
		got = append(got, f.Where+":"+strings.TrimPrefix(f.Path, dir)+":"+f.Key)
		if f.Line == 0 {
			t.Errorf("finding without line: %+v", f)
		}
	}
	want := []string{"file:/home/alice/.aws/credentials:AKIA****MPLE", "file:/srv/app/deep/er/.env:LTAI****bR2m"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("findings %v, want %v", got, want)
	}
	if len(res.Truncated) != 1 || !strings.Contains(res.Truncated[0], "big.log") {
		t.Errorf("truncated %v", res.Truncated)
	}
	if len(res.Errors) == 0 || !strings.Contains(strings.Join(res.Errors, ";"), "/proc: not searched") {
		t.Errorf("errors %v", res.Errors)
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), key1) || strings.Contains(string(b), key2) {
		t.Fatalf("result carries a full key id: %s", b)
	}
}

// TestHunt_Processes runs processes in a child cgroup holding a key in
// their environment and argv, and one outside the scope (the test's own
// environment), and checks only the scoped ones are reported.
func TestHunt_Processes(t *testing.T) {
	bpftest.RequireBPF(t) // root and a cgroup v2 mount
	cg := bpftest.NewCgroup(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	start := func(env []string, args ...string) *exec.Cmd {
		cmd := cg.Command(args[0], args[1:]...)
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	envProc := start([]string{"PATH=/usr/bin", "ALIBABA_CLOUD_ACCESS_KEY_ID=" + key2}, sleep, "30")
	argvProc := start(nil, "/bin/sh", "-c", "sleep 30; true", "--key="+key1)
	clean := start([]string{"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLX"}, sleep, "30")
	_ = clean
	// outside the scope: this test process's environment
	t.Setenv("PALISADE_HUNT_TEST_KEY", key1)

	var res *Result
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err = Hunt(context.Background(), Config{HostID: "h1", Scope: cg.Path, CgroupRoot: bpftest.CgroupRoot, Logger: quiet()}, keySet(t, key1, key2))
		if err != nil {
			t.Fatal(err)
		}
		if (len(res.Processes()) >= 2 && res.ProcessesScanned == 4) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll: the processes are still exec'ing
	}
	var got []string
	for _, f := range res.Findings {
		if f.PID == 0 {
			continue
		}
		got = append(got, f.Where+":"+f.Name+":"+f.Key)
		switch f.Where {
		case WhereEnv:
			if f.PID != uint32(envProc.Process.Pid) || f.StartTime.IsZero() || !strings.HasSuffix(f.Exe, "sleep") {
				t.Errorf("env finding %+v", f)
			}
		case WhereArgv:
			if f.PID != uint32(argvProc.Process.Pid) || !strings.HasSuffix(f.Exe, "sh") {
				t.Errorf("argv finding %+v", f)
			}
		}
	}
	want := "env:ALIBABA_CLOUD_ACCESS_KEY_ID:LTAI****bR2m,argv:3:AKIA****MPLE"
	gotS := strings.Join(got, ",")
	if gotS != want && gotS != "argv:3:AKIA****MPLE,env:ALIBABA_CLOUD_ACCESS_KEY_ID:LTAI****bR2m" {
		t.Fatalf("findings %s, want %s", gotS, want)
	}
	if res.ProcessesScanned != 4 {
		t.Errorf("scanned %d processes, want the 4 in scope (sh, its sleep, two sleeps)", res.ProcessesScanned)
	}
}
