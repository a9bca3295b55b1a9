package bpf

import (
	"os/exec"
	"testing"
)

// TestGeneratedUpToDate recompiles palisade.bpf.c and compares the result
// with the committed bpf2go output. Skipped without clang or with -short.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("recompiles the BPF object; skipped with -short")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed")
	}
	out, err := exec.Command("./check-generated.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestLoadSpec(t *testing.T) {
	spec, err := LoadPalisade()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"handle_exec", "handle_exit", "exit_openat", "connect4", "skb_egress"} {
		if spec.Programs[p] == nil {
			t.Errorf("program %s missing", p)
		}
	}
}
