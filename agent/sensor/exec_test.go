package sensor_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/agent/sensor"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func TestExec_DeniedExecutableKilled_OthersRun(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	truePath := lookPath(t, "true")
	denied := copyFile(t, truePath, filepath.Join(dir, "denied-true"))
	allowed := copyFile(t, truePath, filepath.Join(dir, "allowed-true"))
	e.apply(&sensor.Resolved{DenyExec: []sensor.ExecRule{{ID: fileID(t, denied), Path: denied, Mode: palisadev1.Mode_MODE_ENFORCE}}})

	if _, sig, err := e.run(denied); err != nil || sig != syscall.SIGKILL {
		t.Fatalf("denied exe: signal %v err %v, want SIGKILL", sig, err)
	}
	if out, sig, err := e.run(allowed); err != nil || sig != 0 {
		t.Fatalf("allowed exe: signal %v err %v out %q", sig, err, out)
	}
	ev := e.log.wait(t, "killed exec", execOf("/denied-true"))
	if v := ev.GetExec().GetVerdict(); v != palisadev1.Verdict_VERDICT_KILLED {
		t.Errorf("verdict = %v, want KILLED", v)
	}
	ev = e.log.wait(t, "allowed exec", execOf("/allowed-true"))
	if v := ev.GetExec().GetVerdict(); v != palisadev1.Verdict_VERDICT_ALLOWED {
		t.Errorf("verdict = %v, want ALLOWED", v)
	}
}

func TestExec_AuditModeReportsWithoutKilling(t *testing.T) {
	e := newEnv(t)
	bin := copyFile(t, lookPath(t, "true"), filepath.Join(t.TempDir(), "audited-true"))
	e.apply(&sensor.Resolved{DenyExec: []sensor.ExecRule{{ID: fileID(t, bin), Path: bin, Mode: palisadev1.Mode_MODE_AUDIT}}})
	if _, sig, err := e.run(bin); err != nil || sig != 0 {
		t.Fatalf("audited exe: signal %v err %v", sig, err)
	}
	ev := e.log.wait(t, "audited exec", execOf("/audited-true"))
	if v := ev.GetExec().GetVerdict(); v != palisadev1.Verdict_VERDICT_AUDITED {
		t.Errorf("verdict = %v, want AUDITED", v)
	}
}

func TestExec_EventFields(t *testing.T) {
	e := newEnv(t)
	bin := copyFile(t, lookPath(t, "true"), filepath.Join(t.TempDir(), "fields-true"))
	if _, _, err := e.run(bin, "alpha", "two words", ""); err != nil {
		t.Fatal(err)
	}
	ev := e.log.wait(t, "exec", execOf("/fields-true"))
	p := ev.GetProcess()
	if p.GetPpid() != uint32(os.Getpid()) {
		t.Errorf("ppid = %d, want %d (the test process)", p.GetPpid(), os.Getpid())
	}
	if want := []string{bin, "alpha", "two words", ""}; !slices.Equal(p.GetArgv(), want) {
		t.Errorf("argv = %q, want %q", p.GetArgv(), want)
	}
	if p.GetExePath() != bin {
		t.Errorf("exe path = %q, want %q", p.GetExePath(), bin)
	}
	b, _ := os.ReadFile(bin)
	sum := sha256.Sum256(b)
	if p.GetExeSha256() != hex.EncodeToString(sum[:]) {
		t.Errorf("exe sha256 = %q, want %x", p.GetExeSha256(), sum)
	}
	id := fileID(t, bin)
	if p.GetExeDev() != id.Dev || p.GetExeInode() != id.Ino {
		t.Errorf("exe dev/inode = %d/%d, want %d/%d", p.GetExeDev(), p.GetExeInode(), id.Dev, id.Ino)
	}
	if p.GetUid() != uint32(os.Getuid()) || p.GetCgroupId() == 0 || p.GetComm() != "fields-true" {
		t.Errorf("uid %d cgroup %d comm %q", p.GetUid(), p.GetCgroupId(), p.GetComm())
	}
	if p.GetStartTime() == nil || ev.GetExec().GetFilename() != bin {
		t.Errorf("start time %v filename %q", p.GetStartTime(), ev.GetExec().GetFilename())
	}
	if len(p.GetAncestry()) == 0 || p.GetAncestry()[0].GetPid() != uint32(os.Getpid()) {
		t.Errorf("ancestry = %v, want the test process first", p.GetAncestry())
	}
	exit := e.log.wait(t, "exit", func(ev *palisadev1.Event) bool {
		return ev.GetExit() != nil && ev.GetProcess().GetPid() == p.GetPid()
	})
	if exit.GetExit().GetExitCode() != 0 || exit.GetExit().GetSignal() != 0 {
		t.Errorf("exit = %v", exit.GetExit())
	}
}

// A digest that named no known executable at resolve time: the first run
// is killed from user space, then the inode reaches the kernel deny map
// and later runs die at exec.
func TestExec_DenyByDigestOfUnseenBinary(t *testing.T) {
	e := newEnv(t)
	bin := copyFile(t, lookPath(t, "sleep"), filepath.Join(t.TempDir(), "unseen-sleep"))
	b, _ := os.ReadFile(bin)
	// Make the digest unique to this copy so no running process matches it.
	b = append(b, []byte("palisade-test")...)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	if err := e.s.ApplyBundle(&palisadev1.PolicyBundle{Exec: &palisadev1.ExecPolicy{Deny: []string{"sha256:" + digest}}}); err != nil {
		t.Fatal(err)
	}
	if len(e.s.Policy().DenyExec) != 0 {
		t.Fatalf("digest resolved before the binary ever ran: %v", e.s.Policy().DenyExec)
	}
	if _, sig, err := e.run(bin, "60"); err != nil || sig != syscall.SIGKILL {
		t.Fatalf("first run: signal %v err %v, want SIGKILL from user space", sig, err)
	}
	ev := e.log.wait(t, "user-space kill", execOf("/unseen-sleep"))
	if ev.GetExec().GetVerdict() != palisadev1.Verdict_VERDICT_KILLED {
		t.Errorf("first exec event = %v", ev.GetExec())
	}
	waitFor(t, "digest resolved to the binary's inode", func() bool {
		p := e.s.Policy()
		return len(p.DenyExec) == 1 && p.DenyExec[0].ID == fileID(t, bin)
	})
	before := e.stats().Kills
	if _, sig, err := e.run(bin, "60"); err != nil || sig != syscall.SIGKILL {
		t.Fatalf("second run: signal %v err %v", sig, err)
	}
	if e.stats().Kills != before+1 {
		t.Error("second run not killed in the kernel")
	}
}
