package api_test

import (
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// A policy whose CEL rule an agent would refuse is refused at apply time,
// naming the file, line and CEL error, and changes nothing.
func TestPolicies_RuleThatDoesNotCompileIsRefused(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	admin := controllertest.AdminToken(t, c)
	doc := "apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: r}\nspec:\n  mode: audit\n  rules:\n" +
		"    - name: typo\n      condition: kind == \"exec\" && process.exe_pth == \"/x\"\n      severity: high\n"
	r := send(t, c.APIURL(), admin, "POST", "/api/v1/policies", apiv1.ApplyPolicyRequest{Name: "site.yaml", Source: doc}, nil)
	if r.status != 400 || !strings.Contains(string(r.body), `site.yaml:7: rule \"typo\"`) || !strings.Contains(string(r.body), "exe_pth") {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	l := send(t, c.APIURL(), admin, "GET", "/api/v1/policies", nil, nil)
	if l.status != 200 || !strings.Contains(string(l.body), `"policies": []`) {
		t.Fatalf("a refused policy was stored: %s", l.body)
	}
}
