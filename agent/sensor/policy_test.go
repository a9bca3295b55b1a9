package sensor_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/agent/proccache"
	"github.com/palisade-sec/palisade/agent/sensor"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func TestResolve_InvalidBundleListsEveryProblem(t *testing.T) {
	b := &palisadev1.PolicyBundle{
		ProtectedFiles: []*palisadev1.ProtectedFiles{{
			Paths:   []string{"relative/path", "/tmp/[bad"},
			Readers: []string{"usr/bin/cat", "sha256:1234"},
		}},
		Metadata:   &palisadev1.MetadataPolicy{Endpoints: []string{"169.254.169.254"}},
		Network:    &palisadev1.NetworkPolicy{Deny: []string{"10.0.0.0/8", "not-a-cidr"}},
		Quarantine: &palisadev1.QuarantinePolicy{Allow: []string{"10.0.0.5:53", "nope:1"}},
		Exec:       &palisadev1.ExecPolicy{Deny: []string{"sha256:zz"}},
	}
	_, err := sensor.Resolve(b, nil)
	var inv *sensor.InvalidPolicyError
	if !errors.As(err, &inv) {
		t.Fatalf("err = %v, want InvalidPolicyError", err)
	}
	want := []string{
		"protected_files[0].readers[0]", "protected_files[0].readers[1]",
		"protected_files[0].paths[0]", "protected_files[0].paths[1]",
		"metadata.endpoints[0]", "exec.deny[0]", "network.deny[1]", "quarantine.allow[1]",
	}
	var got []string
	for _, p := range inv.Problems {
		got = append(got, strings.SplitN(p, ":", 2)[0])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("problems at %q,\nwant %q\n(%v)", got, want, inv.Problems)
	}
}

func TestResolve_GlobsSymlinksDigests(t *testing.T) {
	root := t.TempDir()
	var ids []sensor.FileID
	for _, user := range []string{"alice", "bob"} {
		d := filepath.Join(root, "home", user, ".aws")
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, "credentials")
		if err := os.WriteFile(f, []byte(user), 0o600); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fileID(t, f))
	}
	// carol's credentials are a symlink to alice's: the target is protected.
	if err := os.MkdirAll(filepath.Join(root, "home", "carol", ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "home", "alice", ".aws", "credentials"),
		filepath.Join(root, "home", "carol", ".aws", "credentials")); err != nil {
		t.Fatal(err)
	}
	exe := copyFile(t, "/proc/self/exe", filepath.Join(root, "reader"))
	b, _ := os.ReadFile(exe)
	sum := sha256.Sum256(b)

	cache := proccache.New(proccache.Config{})
	defer cache.Close()
	if _, err := cache.Digest(exe); err != nil {
		t.Fatal(err)
	}
	r, err := sensor.Resolve(&palisadev1.PolicyBundle{
		ProtectedFiles: []*palisadev1.ProtectedFiles{{
			Paths:   []string{filepath.Join(root, "home/*/.aws/credentials"), filepath.Join(root, "missing/*")},
			Readers: []string{"sha256:" + hex.EncodeToString(sum[:])},
			Mode:    palisadev1.Mode_MODE_AUDIT,
		}},
		Network: &palisadev1.NetworkPolicy{Deny: []string{"192.0.2.7", "2001:db8::/32"}},
	}, cache)
	if err != nil {
		t.Fatal(err)
	}
	var got []sensor.FileID
	for _, f := range r.Files {
		got = append(got, f.ID)
		if f.Mode != palisadev1.Mode_MODE_AUDIT || len(f.Readers) != 1 || f.Readers[0] != fileID(t, exe) {
			t.Errorf("rule %+v", f)
		}
	}
	if want := []sensor.FileID{ids[0], ids[1], ids[0]}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v (alice, bob, carol->alice)", got, want)
	}
	if len(r.Unresolved) != 1 || !strings.Contains(r.Unresolved[0], "missing") {
		t.Errorf("unresolved = %q", r.Unresolved)
	}
	if len(r.DenyCIDRs) != 2 || r.DenyCIDRs[0].Prefix.String() != "192.0.2.7/32" ||
		r.DenyCIDRs[0].Mode != palisadev1.Mode_MODE_ENFORCE {
		t.Errorf("cidrs = %v", r.DenyCIDRs)
	}
}

// An invalid bundle changes nothing in the kernel: the previous policy
// keeps killing.
func TestApplyBundle_InvalidKeepsPreviousPolicy(t *testing.T) {
	e := newEnv(t)
	bin := copyFile(t, lookPath(t, "true"), filepath.Join(t.TempDir(), "still-denied"))
	if err := e.s.ApplyBundle(&palisadev1.PolicyBundle{Version: 1, Exec: &palisadev1.ExecPolicy{Deny: []string{bin}}}); err != nil {
		t.Fatal(err)
	}
	err := e.s.ApplyBundle(&palisadev1.PolicyBundle{Version: 2, Network: &palisadev1.NetworkPolicy{Deny: []string{"x", "y"}}})
	var inv *sensor.InvalidPolicyError
	if !errors.As(err, &inv) || len(inv.Problems) != 2 {
		t.Fatalf("err = %v, want 2 problems", err)
	}
	// Too large for the kernel maps: rejected by Apply, nothing changes.
	big := &sensor.Resolved{Version: 3}
	for i := range 5000 {
		big.DenyExec = append(big.DenyExec, sensor.ExecRule{ID: sensor.FileID{Dev: 1, Ino: uint64(i + 1)}})
	}
	if err := e.s.Apply(big); err == nil {
		t.Fatal("oversized policy applied")
	}
	if v := e.s.Policy().Version; v != 1 {
		t.Errorf("policy version %d in force, want 1", v)
	}
	if _, sig, err := e.run(bin); err != nil || sig != syscall.SIGKILL {
		t.Fatalf("signal %v err %v: previous policy no longer enforced", sig, err)
	}
}

// A protected file replaced by rename (new inode) or created after the
// bundle was applied is protected once the watcher re-resolves.
func TestApplyBundle_ReresolvesCreatedAndReplacedFiles(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cred := filepath.Join(dir, "users", "alice", "token")
	if err := os.MkdirAll(filepath.Dir(cred), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cred, []byte("v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	cat := lookPath(t, "cat")
	err := e.s.ApplyBundle(&palisadev1.PolicyBundle{ProtectedFiles: []*palisadev1.ProtectedFiles{{
		Paths: []string{filepath.Join(dir, "users/*/token")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	protected := func(path string) func() bool {
		return func() bool {
			var st syscall.Stat_t
			if syscall.Stat(path, &st) != nil {
				return false
			}
			for _, f := range e.s.Policy().Files {
				if f.ID == (sensor.FileID{Dev: st.Dev, Ino: st.Ino}) {
					return true
				}
			}
			return false
		}
	}
	// Replace by rename: the new inode must become protected.
	tmp := cred + ".new"
	if err := os.WriteFile(tmp, []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cred); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replaced file protected", protected(cred))
	if _, sig, _ := e.run(cat, cred); sig != syscall.SIGKILL {
		t.Fatalf("replaced file: signal %v, want SIGKILL", sig)
	}
	// A new user directory and file, created after the bundle.
	bob := filepath.Join(dir, "users", "bob", "token")
	if err := os.MkdirAll(filepath.Dir(bob), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bob, []byte("bob"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new file protected", protected(bob))
	if _, sig, _ := e.run(cat, bob); sig != syscall.SIGKILL {
		t.Fatalf("new file: signal %v, want SIGKILL", sig)
	}
}

// Apply is atomic as seen by the kernel programs. Two policies protect F
// and G; cat may read F under both, but the reader-set numbering differs
// (A: F->set1={cat}, G->set2={}; B: G->set1={}, F->set2={cat}), so a
// program combining one policy's protected-files map with the other's
// readers map would kill cat. Policies alternate while cat reads F in a
// loop: cat must never die.
func TestApply_AtomicSwitchNeverMixesPolicies(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	f, g := filepath.Join(dir, "F"), filepath.Join(dir, "G")
	for _, p := range []string{f, g} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cat := lookPath(t, "cat")
	ruleF := sensor.FileRule{ID: fileID(t, f), Readers: []sensor.FileID{fileID(t, cat)}}
	ruleG := sensor.FileRule{ID: fileID(t, g)}
	policies := []*sensor.Resolved{
		{Version: 1, Files: []sensor.FileRule{ruleF, ruleG}},
		{Version: 2, Files: []sensor.FileRule{ruleG, ruleF}},
	}
	e.apply(policies[0])
	done := make(chan struct{})
	errc := make(chan error, 1)
	applies := 0
	go func() {
		defer close(errc)
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := e.s.Apply(policies[i%2]); err != nil {
				errc <- err
				return
			}
			applies++
		}
	}()
	script := fmt.Sprintf("i=0; while [ $i -lt 300 ]; do %s %s >/dev/null || exit 9; i=$((i+1)); done", cat, f)
	out, sig, err := e.run("/bin/sh", "-c", script)
	close(done)
	if aerr := <-errc; aerr != nil {
		t.Fatal(aerr)
	}
	if err != nil || sig != 0 {
		t.Fatalf("reader loop failed (a mixed policy killed cat?): out %q signal %v err %v", out, sig, err)
	}
	if st := e.stats(); st.Kills != 0 {
		t.Fatalf("%d kills during %d policy switches", st.Kills, applies)
	}
	t.Logf("%d policy switches during 300 reads", applies)
}

func TestResolve_DefaultMetadataEndpoints(t *testing.T) {
	r, err := sensor.Resolve(&palisadev1.PolicyBundle{Metadata: &palisadev1.MetadataPolicy{Clients: []string{"/nonexistent/cloud-init"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Metadata, sensor.DefaultMetadataEndpoints) || len(r.MetadataClients) != 0 || len(r.Unresolved) != 1 {
		t.Errorf("metadata %v clients %v unresolved %q", r.Metadata, r.MetadataClients, r.Unresolved)
	}
}

// Fleet IOCs in a bundle are enforced whatever the policy's modes.
func TestResolve_IOCsAlwaysEnforced(t *testing.T) {
	r, err := sensor.Resolve(&palisadev1.PolicyBundle{
		DefaultMode: palisadev1.Mode_MODE_AUDIT,
		Iocs:        []string{"203.0.113.0/24", "sha256:" + strings.Repeat("ab", 32)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DenyCIDRs) != 1 || r.DenyCIDRs[0].Mode != palisadev1.Mode_MODE_ENFORCE {
		t.Errorf("cidrs %v", r.DenyCIDRs)
	}
	_, err = sensor.Resolve(&palisadev1.PolicyBundle{Iocs: []string{"nonsense"}}, nil)
	var inv *sensor.InvalidPolicyError
	if !errors.As(err, &inv) || !strings.HasPrefix(inv.Problems[0], "iocs[0]") {
		t.Errorf("err = %v", err)
	}
}
