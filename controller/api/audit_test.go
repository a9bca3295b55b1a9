package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/controller/api"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/policy"
)

// Every mutating route, called successfully through a follower (so the
// write is forwarded to the leader), leaves exactly one new audit entry,
// carrying the request's id; a retry with the same Idempotency-Key leaves
// none. The table must name every mutating route the server registers.
func TestAudit_EveryMutatingRouteWritesOneEntry(t *testing.T) {
	c := controllertest.Cluster(t, 3)
	admin := c.AdminToken()
	leader := c.Leader()
	base := c.URLs()[(leader+1)%3] // a follower
	lbase := c.URLs()[leader]

	mustJSON := func(r rawResp, want int, out any) {
		t.Helper()
		if r.status != want {
			t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
		}
		if out != nil {
			if err := json.Unmarshal(r.body, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A host to act on.
	var et apiv1.EnrollToken
	mustJSON(send(t, base, admin, "POST", "/api/v1/enroll-tokens", apiv1.CreateEnrollTokenRequest{}, nil), 201, &et)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	var enrolled apiv1.EnrollResponse
	mustJSON(send(t, base, "", "POST", "/api/v1/enroll", apiv1.EnrollRequest{Token: et.Token, Hostname: "h1", NKey: pub}, nil), 201, &enrolled)
	host := enrolled.HostID
	var inc1, inc2 apiv1.Incident
	mustJSON(send(t, base, admin, "POST", "/api/v1/incidents", apiv1.CreateIncidentRequest{HostID: host, Rule: "r", Severity: "high"}, nil), 201, &inc1)
	mustJSON(send(t, base, admin, "POST", "/api/v1/incidents", apiv1.CreateIncidentRequest{HostID: host, Rule: "r", Severity: "low"}, nil), 201, &inc2)
	var ioc apiv1.IOC
	mustJSON(send(t, base, admin, "POST", "/api/v1/iocs", apiv1.AddIOCRequest{Type: "cidr", Value: "198.51.100.0/24"}, nil), 201, &ioc)
	var tok apiv1.APIToken
	mustJSON(send(t, base, admin, "POST", "/api/v1/tokens", apiv1.CreateAPITokenRequest{Name: "x", Role: "viewer"}, nil), 201, &tok)
	mustJSON(send(t, base, admin, "POST", "/api/v1/policies", apiv1.ApplyPolicyRequest{Source: string(policy.Example())}, nil), 201, nil)
	mustJSON(send(t, base, admin, "POST", "/api/v1/policies", apiv1.ApplyPolicyRequest{Source: string(policy.Example()), Comment: "again"}, nil), 201, nil)
	kp2, _ := nkeys.CreateUser()
	pub2, _ := kp2.PublicKey()
	var et2 apiv1.EnrollToken
	mustJSON(send(t, base, admin, "POST", "/api/v1/enroll-tokens", apiv1.CreateEnrollTokenRequest{}, nil), 201, &et2)

	type call struct {
		path string
		body any
		want int
	}
	cases := map[string]call{
		"POST /api/v1/enroll":                             {"/api/v1/enroll", apiv1.EnrollRequest{Token: et2.Token, Hostname: "h2", NKey: pub2}, 201},
		"POST /api/v1/enroll-tokens":                      {"/api/v1/enroll-tokens", apiv1.CreateEnrollTokenRequest{TTL: "1h"}, 201},
		"PUT /api/v1/hosts/{id}/labels":                   {"/api/v1/hosts/" + host + "/labels", apiv1.SetLabelsRequest{Labels: map[string]string{"env": "prod"}}, 200},
		"POST /api/v1/hosts/{id}/quarantine":              {"/api/v1/hosts/" + host + "/quarantine", apiv1.QuarantineRequest{Reason: "test"}, 202},
		"POST /api/v1/hosts/{id}/release":                 {"/api/v1/hosts/" + host + "/release", apiv1.QuarantineRequest{Reason: "done"}, 202},
		"POST /api/v1/hosts/{id}/kill":                    {"/api/v1/hosts/" + host + "/kill", apiv1.KillRequest{PID: 42, Reason: "miner"}, 202},
		"POST /api/v1/incidents":                          {"/api/v1/incidents", apiv1.CreateIncidentRequest{HostID: host, Rule: "r2", Severity: "medium"}, 201},
		"POST /api/v1/incidents/{id}/acknowledge":         {"/api/v1/incidents/" + inc1.ID + "/acknowledge", apiv1.IncidentUpdateRequest{Note: "mine"}, 200},
		"POST /api/v1/incidents/{id}/resolve":             {"/api/v1/incidents/" + inc2.ID + "/resolve", apiv1.IncidentUpdateRequest{}, 200},
		"POST /api/v1/policies":                           {"/api/v1/policies", apiv1.ApplyPolicyRequest{Source: string(policy.Example()), Name: "p.yaml"}, 201},
		"POST /api/v1/policies/{version}/rollback":        {"/api/v1/policies/1/rollback", apiv1.RollbackRequest{}, 201},
		"POST /api/v1/iocs":                               {"/api/v1/iocs", apiv1.AddIOCRequest{Type: "sha256", Value: fmt.Sprintf("%064x", 7)}, 201},
		"DELETE /api/v1/iocs/{id}":                        {"/api/v1/iocs/" + ioc.ID, nil, 204},
		"POST /api/v1/leaked-credentials":                 {"/api/v1/leaked-credentials", apiv1.AddLeakedCredentialRequest{KeyID: "LTAI5tAbCdEfGhIjKlMnOp"}, 201},
		"POST /api/v1/leaked-credentials/secret-scanning": {"/api/v1/leaked-credentials/secret-scanning", []apiv1.SecretScanningMatch{{Token: "AKIAIOSFODNN7EXAMPLE", Type: "aws_access_key_id", URL: "https://example.invalid/commit/1"}}, 201},
		"POST /api/v1/tokens":                             {"/api/v1/tokens", apiv1.CreateAPITokenRequest{Name: "y", Role: "responder"}, 201},
		"DELETE /api/v1/tokens/{id}":                      {"/api/v1/tokens/" + tok.ID, nil, 200},
		"POST /api/v1/cluster/join":                       {"/api/v1/cluster/join", apiv1.JoinRequest{NodeID: "n9", RaftAddress: controllertest.FreeAddr(t), APIURL: "http://127.0.0.1:1"}, 200},
		"DELETE /api/v1/cluster/nodes/{id}":               {"/api/v1/cluster/nodes/n9", nil, 204},
	}
	// withRID counts the audit entries that carry request id rid (other
	// writers, such as the leader's dispatcher, write entries too).
	withRID := func(rid string) int {
		var l apiv1.AuditList
		mustJSON(send(t, lbase, admin, "GET", "/api/v1/audit?limit=1000&consistent=true", nil, nil), 200, &l)
		n := 0
		for _, e := range l.Entries {
			if e.RequestID == rid {
				n++
			}
		}
		return n
	}
	seen := map[string]bool{}
	// The join must come before the removal: run in a fixed order.
	order := []string{}
	for _, rt := range api.New(api.Deps{}).Routes() {
		if rt.Mutating() {
			order = append(order, rt.Method+" "+rt.Path)
		}
	}
	for i, k := range order {
		if k == "DELETE /api/v1/cluster/nodes/{id}" {
			order = append(append(order[:i:i], order[i+1:]...), k)
			break
		}
	}
	for i, k := range order {
		cs, ok := cases[k]
		if !ok {
			t.Errorf("mutating route %s has no audit case: add one", k)
			continue
		}
		seen[k] = true
		method := k[:indexByte(k, ' ')]
		rid := fmt.Sprintf("audit-test-%d", i)
		hdr := map[string]string{"X-Request-Id": rid, apiv1.HeaderIdempotencyKey: rid}
		r := send(t, base, admin, method, cs.path, cs.body, hdr)
		if r.status != cs.want {
			t.Errorf("%s: %d %s, want %d", k, r.status, r.body, cs.want)
			continue
		}
		if got := withRID(rid); got != 1 {
			t.Errorf("%s: %d audit entries with its request id, want 1", k, got)
			continue
		}
		// A retry with the same key writes nothing more (the enrolment,
		// which has no token to scope a key to, is single-use instead;
		// joins and removals are naturally repeatable).
		if k != "POST /api/v1/enroll" && k != "DELETE /api/v1/cluster/nodes/{id}" && k != "POST /api/v1/cluster/join" {
			send(t, base, admin, method, cs.path, cs.body, hdr)
			if got := withRID(rid); got != 1 {
				t.Errorf("%s: after a retry with the same Idempotency-Key, %d entries", k, got)
			}
		}
	}
	for k := range cases {
		if !seen[k] {
			t.Errorf("audit case %s matches no registered route", k)
		}
	}
}

func indexByte(s string, b byte) int {
	for i := range len(s) {
		if s[i] == b {
			return i
		}
	}
	return -1
}

var _ = http.StatusOK
