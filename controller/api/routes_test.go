package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/palisade-sec/palisade/controller/api"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/controllertest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Every registered route is in openapi.yaml with its role, and every
// operation in openapi.yaml is registered.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			role, _ := op["x-palisade-role"].(string)
			documented[strings.ToUpper(method)+" "+path] = role
		}
	}
	registered := map[string]string{}
	for _, r := range api.New(api.Deps{}).Routes() {
		registered[r.Method+" "+r.Path] = api.RoleName(r.Role)
	}
	for k, role := range registered {
		d, ok := documented[k]
		switch {
		case !ok:
			t.Errorf("route %s is not in openapi.yaml", k)
		case d != role:
			t.Errorf("route %s: openapi.yaml says role %q, the server requires %q", k, d, role)
		}
	}
	for k := range documented {
		if _, ok := registered[k]; !ok {
			t.Errorf("openapi.yaml documents %s, which the server does not serve", k)
		}
	}
}

func fillPath(p string) string {
	for _, v := range []string{"{id}", "{version}"} {
		p = strings.ReplaceAll(p, v, "1")
	}
	return p
}

type rawResp struct {
	status int
	body   []byte
	header http.Header
}

func send(t *testing.T, base, token, method, path string, body any, hdr map[string]string) rawResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{resp.StatusCode, b, resp.Header}
}

func createToken(t *testing.T, base, admin, role string) string {
	t.Helper()
	r := send(t, base, admin, "POST", "/api/v1/tokens", apiv1.CreateAPITokenRequest{Name: role + "-t", Role: role}, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("create %s token: %d %s", role, r.status, r.body)
	}
	var tok apiv1.APIToken
	_ = json.Unmarshal(r.body, &tok)
	return tok.Token
}

// For every route that needs a token: no token is 401, a lesser role
// 403, the route's role and above pass authorisation. Built from the
// server's own route list, so a new route cannot be missed.
func TestRoleMatrix_EveryRoute(t *testing.T) {
	c := controllertest.Start(t, controllertest.Config(t))
	base, admin := c.APIURL(), controllertest.AdminToken(t, c)
	tokens := map[palisadev1.Role]string{
		palisadev1.Role_ROLE_VIEWER:    createToken(t, base, admin, "viewer"),
		palisadev1.Role_ROLE_RESPONDER: createToken(t, base, admin, "responder"),
		palisadev1.Role_ROLE_ADMIN:     admin,
	}
	roles := []palisadev1.Role{palisadev1.Role_ROLE_VIEWER, palisadev1.Role_ROLE_RESPONDER, palisadev1.Role_ROLE_ADMIN}
	n := 0
	for _, rt := range api.New(api.Deps{}).Routes() {
		if rt.Role == palisadev1.Role_ROLE_UNSPECIFIED {
			continue
		}
		n++
		path := fillPath(rt.Path)
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			if r := send(t, base, "", rt.Method, path, nil, nil); r.status != http.StatusUnauthorized {
				t.Errorf("no token: %d, want 401", r.status)
			}
			if r := send(t, base, "pat_wrong", rt.Method, path, nil, nil); r.status != http.StatusUnauthorized {
				t.Errorf("unknown token: %d, want 401", r.status)
			}
			for _, role := range roles {
				r := send(t, base, tokens[role], rt.Method, path, map[string]any{}, nil)
				denied := r.status == http.StatusUnauthorized || r.status == http.StatusForbidden
				if want := role < rt.Role; denied != want || (want && r.status != http.StatusForbidden) {
					t.Errorf("%s: %d %s (route needs %s)", api.RoleName(role), r.status, bytes.TrimSpace(r.body), api.RoleName(rt.Role))
				}
			}
		})
	}
	if n < 30 {
		t.Fatalf("only %d authenticated routes: the route list is incomplete", n)
	}
}

// sortedKeys is for stable failure messages.
func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ = fmt.Sprint
