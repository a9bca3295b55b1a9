package policy

import (
	"strings"
	"testing"
)

func TestResponse_ParseCompileValidate(t *testing.T) {
	doc := `apiVersion: palisade/v1
kind: Policy
metadata: {name: r}
spec:
  mode: audit
  response:
    dryRun: true
    window: 5m
    actions:
      - {minSeverity: high, hostLabels: {env: prod}, action: quarantine}
      - {minSeverity: critical, rule: honeytoken-opened, action: quarantine}
`
	b, err := Compile([]byte(doc), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := b.GetResponse()
	if !r.GetDryRun() || r.GetWindowSeconds() != 300 || len(r.GetRules()) != 2 || r.GetRules()[0].GetHostLabels()["env"] != "prod" {
		t.Fatalf("response = %v", r)
	}
	// Absent section: quarantine on critical.
	b2, err := Compile([]byte("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: d}\nspec:\n  mode: audit\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := b2.GetResponse(); d.GetDryRun() || len(d.GetRules()) != 1 || d.GetRules()[0].GetAction() != "quarantine" || d.GetRules()[0].GetMinSeverity() != "critical" {
		t.Fatalf("default response = %v", d)
	}
	bad := strings.NewReplacer("minSeverity: high", "minSeverity: huge", "action: quarantine}", "action: nuke}", "5m", "forever").Replace(doc)
	_, err = Compile([]byte(bad), "bad.yaml")
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	var paths []string
	for _, p := range ve.Problems {
		paths = append(paths, p.Path)
	}
	got := strings.Join(paths, " ")
	for _, want := range []string{"spec.response.window", "spec.response.actions[0].minSeverity", "spec.response.actions[0].action", "spec.response.actions[1].action"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %s", got, want)
		}
	}
}
