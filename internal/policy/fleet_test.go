package policy

import (
	"strings"
	"testing"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// The controller merges fleet IOCs and leaked keys into bundles; agents
// re-check them like everything else.
func TestValidateBundle_FleetContent(t *testing.T) {
	b, err := Compile(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.Iocs = []string{"203.0.113.7/32", "sha256:" + strings.Repeat("a", 64)}
	b.LeakedKeys = []*palisadev1.LeakedKey{{Sha256: strings.Repeat("b", 64), Prefix: "AKIA", Length: 20, Masked: "AKIA****WXYZ"}}
	if err := ValidateBundle(b); err != nil {
		t.Fatalf("valid fleet content refused: %v", err)
	}
	b.Iocs = append(b.Iocs, "not-an-address")
	b.LeakedKeys = append(b.LeakedKeys, &palisadev1.LeakedKey{Sha256: "short", Prefix: "AKIA", Length: 2})
	err = ValidateBundle(b)
	if err == nil {
		t.Fatal("bad fleet content accepted")
	}
	for _, want := range []string{"iocs[2]", "leaked_keys[1].sha256", "leaked_keys[1]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
