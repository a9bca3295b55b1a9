package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/internal/policy"
)

func TestCheck_ReportsRuleFileLineAndCELError(t *testing.T) {
	doc := `apiVersion: palisade/v1
kind: Policy
metadata: {name: c}
spec:
  mode: audit
  rules:
    - name: fine
      condition: kind == "exec" && process.uid == 0
      severity: low
    - name: broken
      condition: kind == "exec" && process.nonexistent_field == 1
      severity: high
`
	b, err := policy.Compile([]byte(doc), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = Check(b)
	var ae *ApplyError
	if !errors.As(err, &ae) || len(ae.Problems) != 1 {
		t.Fatalf("err = %v, want one rule problem", err)
	}
	p := ae.Problems[0]
	if p.Rule != "broken" || p.SourceFile != "rules.yaml" || p.SourceLine != 10 || !strings.Contains(p.Err, "nonexistent_field") {
		t.Fatalf("problem = %+v", p)
	}
	b.Rules = b.Rules[:1]
	if err := Check(b); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
}
