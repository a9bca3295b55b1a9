package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

const header = "apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: default}\n"

// doc returns a document whose spec has mode enforce followed by spec,
// which is indented by two spaces.
func doc(spec string) string { return header + "spec:\n  mode: enforce\n" + spec }

// problemPaths returns the paths of err's problems, failing if err is not
// a *ValidationError.
func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("ValidationError without problems")
	}
	var paths []string
	for _, p := range ve.Problems {
		paths = append(paths, p.Path)
	}
	return paths
}

func TestParse_Valid(t *testing.T) {
	const (
		audit   = palisadev1.Mode_MODE_AUDIT
		enforce = palisadev1.Mode_MODE_ENFORCE
	)
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, b *palisadev1.PolicyBundle)
	}{
		{
			name: "minimal document fills every element with the default mode",
			doc:  doc(""),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if b.Name != "default" || b.DefaultMode != enforce || b.Version != 0 || b.CreatedAt != nil {
					t.Errorf("header: %v", b)
				}
				if b.Exec.GetMode() != enforce || b.Network.GetMode() != enforce || b.Metadata.GetMode() != enforce || b.Quarantine == nil {
					t.Errorf("elements not filled: %v", b)
				}
			},
		},
		{
			name: "per-element modes override spec.mode",
			doc: header + `spec:
  mode: audit
  credentials:
    files:
      - paths: [/root/.aws/credentials]
        mode: enforce
      - paths: [/root/.ssh/id_rsa]
    metadata: {endpoints: ["169.254.169.254:80"], mode: enforce}
  exec: {deny: [/tmp/xmrig], mode: enforce}
  network: {deny: [10.0.0.0/8]}
  rules:
    - {name: r1, condition: "true", severity: low, mode: enforce}
    - {name: r2, condition: "true", severity: low}
`,
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				got := []palisadev1.Mode{b.DefaultMode, b.ProtectedFiles[0].Mode, b.ProtectedFiles[1].Mode,
					b.Metadata.Mode, b.Exec.Mode, b.Network.Mode, b.Rules[0].Mode, b.Rules[1].Mode}
				want := []palisadev1.Mode{audit, enforce, audit, enforce, enforce, audit, enforce, audit}
				if !slices.Equal(got, want) {
					t.Errorf("modes = %v, want %v", got, want)
				}
			},
		},
		{
			name: "null values mean absent",
			doc:  doc("  credentials:\n  exec:\n    deny:\n  network: ~\n  quarantine: {enabled: true, allow: null}\n"),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if len(b.Exec.Deny) != 0 || !b.Quarantine.Enabled {
					t.Errorf("got %v", b)
				}
			},
		},
		{
			name: "CIDRs and endpoints are normalized",
			doc: doc(`  network: {deny: ["203.0.113.7/24", "2001:DB8::1/32", "0.0.0.0/0"]}
  quarantine: {allow: ["[FD00:EC2::254]:0080", "10.0.0.5:53"]}
  credentials:
    metadata: {endpoints: ["[fd00:ec2:0::254]:80"]}
`),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if want := []string{"203.0.113.0/24", "2001:db8::/32", "0.0.0.0/0"}; !slices.Equal(b.Network.Deny, want) {
					t.Errorf("deny = %q, want %q", b.Network.Deny, want)
				}
				if want := []string{"[fd00:ec2::254]:80", "10.0.0.5:53"}; !slices.Equal(b.Quarantine.Allow, want) {
					t.Errorf("allow = %q, want %q", b.Quarantine.Allow, want)
				}
				if want := []string{"[fd00:ec2::254]:80"}; !slices.Equal(b.Metadata.Endpoints, want) {
					t.Errorf("endpoints = %q, want %q", b.Metadata.Endpoints, want)
				}
			},
		},
		{
			name: "globs, digests and an empty reader list",
			doc: doc(`  credentials:
    files:
      - paths: ["/home/*/.ssh/id_[rde]*", "/root/.?ws/credentials", "/home/[!.]*/.aliyun/config.json"]
        readers: []
      - paths: [/etc/shadow]
        readers: ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", /usr/sbin/unix_chkpwd]
`),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if len(b.ProtectedFiles) != 2 || len(b.ProtectedFiles[0].Paths) != 3 || len(b.ProtectedFiles[0].Readers) != 0 ||
					len(b.ProtectedFiles[1].Readers) != 2 {
					t.Errorf("files = %v", b.ProtectedFiles)
				}
			},
		},
		{
			name: "rule defaults and source position",
			doc: doc(`  rules:
    - name: Exec_From.tmp-1
      condition: |
        process.exe.startsWith("/tmp/")
      severity: critical
`),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				r := b.Rules[0]
				if r.Response != "none" || r.Mode != enforce || r.SourceFile != "test.yaml" || r.SourceLine != 7 {
					t.Errorf("rule = %v", r)
				}
			},
		},
		{
			name: "honeytokens",
			doc: doc(`  credentials:
    honeytokens:
      - {path: /root/.aliyun/config.json.bak, provider: alibaba}
      - {path: /root/.aws/credentials.bak, provider: aws}
      - {path: /opt/app/.env, provider: generic}
`),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if len(b.Honeytokens) != 3 || b.Honeytokens[2].Provider != "generic" {
					t.Errorf("honeytokens = %v", b.Honeytokens)
				}
			},
		},
		{
			name: "example",
			doc:  string(Example()),
			check: func(t *testing.T, b *palisadev1.PolicyBundle) {
				if len(b.ProtectedFiles) != 2 || len(b.Rules) != 2 || len(b.Honeytokens) != 2 {
					t.Errorf("bundle = %v", b)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc), "test.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			b, err := p.Compile()
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if err := ValidateBundle(b); err != nil {
				t.Fatalf("ValidateBundle: %v", err)
			}
			tt.check(t, b)
		})
	}
}

func TestParse_Invalid(t *testing.T) {
	bigList := func(key string, n int, f func(i int) string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "  %s:\n", key)
		for i := range n {
			fmt.Fprintf(&b, "    - %q\n", f(i))
		}
		return b.String()
	}
	tests := []struct {
		name string
		doc  string
		want []string // exact problem paths, in order
		msg  string   // a substring of the first problem's message
	}{
		{"empty", "", []string{""}, "empty"},
		{"only a comment", "# nothing\n", []string{""}, "empty"},
		{"syntax error", "spec: [\n", []string{""}, "invalid YAML"},
		{"two documents", doc("") + "---\n" + doc(""), []string{""}, "more than one YAML document"},
		{"not a mapping", "- a\n", []string{""}, "expected a mapping, got a list"},
		{"everything missing", "{}", []string{"apiVersion", "kind", "metadata", "spec"}, "required"},
		{"wrong header", "apiVersion: palisade/v2\nkind: policy\nmetadata: {name: -x}\nspec: {mode: audit}\n",
			[]string{"apiVersion", "kind", "metadata.name"}, `"palisade/v2" is not supported`},
		{"spec.mode required", header + "spec: {exec: {deny: [/tmp/x]}}\n", []string{"spec.mode"}, "required"},
		{"unknown keys at every level", header + `spec:
  mode: enforce
  modes: audit
  credentials:
    files:
      - paths: [/a]
        reader: [/b]
  rules:
    - {name: r, condition: x, sevrity: low}
color: red
`, []string{"spec.modes", "spec.credentials.files[0].reader", "spec.rules[0].sevrity", "spec.rules[0].severity", "color"},
			`unknown field "modes" (known: mode, credentials, exec, network, quarantine, rules, response)`},
		{"duplicate key", doc("  mode: audit\n"), []string{"spec.mode"}, "duplicate key"},
		{"wrong types", header + `spec:
  mode: [enforce]
  network: {deny: "10.0.0.0/8"}
  exec: {deny: [123, true, [a], {a: b}]}
  quarantine: {enabled: "yes"}
  credentials: [files]
  rules: {}
`, []string{"spec.mode", "spec.network.deny", "spec.exec.deny[0]", "spec.exec.deny[1]", "spec.exec.deny[2]", "spec.exec.deny[3]",
			"spec.quarantine.enabled", "spec.credentials", "spec.rules"}, "expected a string, got a list"},
		{"metadata.name not a string", "apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: 123}\nspec: {mode: audit}\n",
			[]string{"metadata.name"}, "expected a string, got a number"},
		{"mode values", header + `spec:
  mode: Enforce
  exec: {mode: block}
  network: {mode: ""}
`, []string{"spec.mode", "spec.exec.mode", "spec.network.mode"}, `"Enforce" is not a mode`},
		{"bad paths", doc(`  credentials:
    files:
      - paths:
          - relative/path
          - /a/../b
          - /a//b
          - /a/b/
          - "/a/\0b"
          - /a/[b
          - /a/**/b
          - '/a/\*'
          - ~/.aws/credentials
          - ""
          - /ok
`), []string{"[0]", "[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]", "[8]", "[9]"}, "not an absolute path"},
		{"bad readers", doc(`  credentials:
    files:
      - paths: [/a]
        readers:
          - ssh
          - sha256:9f86
          - sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08
          - /usr/bin/ss*
          - /usr/bin/ssh
          - /usr/bin/ssh
          - sha1:abc
`), []string{"[0]", "[1]", "[2]", "[3]", "[5]", "[6]"}, "neither an absolute executable path nor sha256"},
		{"bad CIDRs", doc(`  network:
    deny: [foo, 1.2.3.4, 10.0.0.0/33, "::ffff:1.2.3.0/120", 10.1.2.3/8, 10.0.0.0/8, "fe80::1%eth0/64"]
`), []string{"[0]", "[1]", "[2]", "[3]", "[5]", "[6]"}, `"foo" is not a CIDR`},
		{"bad endpoints", doc(`  quarantine:
    allow: [1.2.3.4, "host:80", "1.2.3.4:0", "1.2.3.4:65536", "[fe80::1%eth0]:80", "fd00::1:80", "1.2.3.4:53", "1.2.3.4:053", "[::ffff:1.2.3.4]:80", "1.2.3.4:-1"]
`), []string{"[0]", "[1]", "[2]", "[3]", "[4]", "[5]", "[7]", "[8]", "[9]"}, "not host:port"},
		{"metadata", doc(`  credentials:
    metadata:
      clients: [/usr/bin/cloud-init, cloud-init]
      mode: off
`), []string{"spec.credentials.metadata.endpoints", "spec.credentials.metadata.clients[1]", "spec.credentials.metadata.mode"}, "required"},
		{"metadata empty endpoints", doc("  credentials:\n    metadata: {endpoints: []}\n"),
			[]string{"spec.credentials.metadata.endpoints"}, "at least one endpoint"},
		{"files entries", doc(`  credentials:
    files:
      - readers: [/usr/bin/ssh]
      - paths: []
      - paths: [/root/.aws/credentials]
      - paths: [/root/.ssh/id_rsa, /root/.aws/credentials]
      - /root/.aws/config
`), []string{"spec.credentials.files[0].paths", "spec.credentials.files[1].paths", "spec.credentials.files[3].paths[1]", "spec.credentials.files[4]"},
			"required"},
		{"honeytokens", doc(`  credentials:
    honeytokens:
      - {path: relative, provider: aws}
      - {path: /a/*, provider: gcp}
      - {path: /b}
      - {path: /c, provider: generic}
      - {path: /c, provider: aws}
      - {provider: AWS}
`), []string{"spec.credentials.honeytokens[0].path", "spec.credentials.honeytokens[1].path", "spec.credentials.honeytokens[1].provider",
			"spec.credentials.honeytokens[2].provider", "spec.credentials.honeytokens[4].path", "spec.credentials.honeytokens[5].path",
			"spec.credentials.honeytokens[5].provider"}, "not an absolute path"},
		{"rules", doc(`  rules:
    - {name: "", condition: x, severity: low}
    - {name: a, condition: x, severity: low}
    - {name: a, condition: x, severity: urgent, response: quarantine}
    - {name: "has space", condition: "  ", severity: high}
    - {name: b, severity: high, mode: x, description: ok}
`), []string{"spec.rules[0].name", "spec.rules[2].name", "spec.rules[2].severity", "spec.rules[2].response",
			"spec.rules[3].name", "spec.rules[3].condition", "spec.rules[4].condition", "spec.rules[4].mode"}, "rule name is empty"},
		{"aliases and merge keys", doc(`  exec: &e {deny: [/tmp/x]}
  network: *e
  quarantine:
    <<: {enabled: true}
`), []string{"spec.network", "spec.quarantine"}, "aliases are not supported"},
		{"non-string key", doc("  1: x\n"), []string{"spec"}, "keys must be strings"},
		{"list too long", doc(bigList("network:\n    deny", MaxListLength+1, func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256, i%256) })),
			[]string{"spec.network.deny"}, "at most 1024"},
		{"too many rules", doc("  rules:\n" + strings.Repeat("    - {name: r, condition: x, severity: low}\n", MaxRules+1)),
			[]string{"spec.rules"}, "at most 512"},
		{"document too large", doc("# " + strings.Repeat("x", MaxDocumentSize) + "\n"), []string{""}, "at most 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc), "test.yaml")
			if err == nil {
				t.Fatalf("Parse accepted the document: %+v", p)
			}
			if p != nil {
				t.Error("Parse returned a policy with an error")
			}
			got := problemPaths(t, err)
			// Entries starting with "[" are indexes in the one list under test.
			if strings.HasPrefix(tt.want[0], "[") {
				for i, g := range got {
					if j := strings.LastIndex(g, "["); j >= 0 {
						got[i] = g[j:]
					}
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problem paths = %q\nwant %q\nerror: %v", got, tt.want, err)
			}
			var ve *ValidationError
			errors.As(err, &ve)
			if !strings.Contains(ve.Problems[0].Message, tt.msg) {
				t.Errorf("first message %q does not contain %q", ve.Problems[0].Message, tt.msg)
			}
			for _, pr := range ve.Problems {
				if !strings.Contains(err.Error(), pr.String()) {
					t.Errorf("Error() lacks problem %q", pr)
				}
			}
		})
	}
}

func TestParse_LineNumbers(t *testing.T) {
	src := `apiVersion: palisade/v1
kind: Policy
metadata:
  name: default
spec:
  mode: enforce
  network:
    deny:
      - 10.0.0.0/8
      - foo
  exec:
    deny: [/bin/true,
           relative]
  quarantine:
    enable: true
  rules:
    - name: r
      severity: low
`
	_, err := Parse([]byte(src), "lines.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []Problem{
		{Path: "spec.network.deny[1]", Line: 10},
		{Path: "spec.exec.deny[1]", Line: 13},
		{Path: "spec.quarantine.enable", Line: 15},
		{Path: "spec.rules[0].condition", Line: 17},
	}
	if len(ve.Problems) != len(want) {
		t.Fatalf("problems = %v, want %v", ve.Problems, want)
	}
	for i, w := range want {
		if g := ve.Problems[i]; g.Path != w.Path || g.Line != w.Line {
			t.Errorf("problem %d = %s, want %s at line %d", i, g, w.Path, w.Line)
		}
	}
	if want := `line 10: spec.network.deny[1]: "foo" is not a CIDR`; !strings.Contains(err.Error(), want) {
		t.Errorf("Error() = %q, lacks %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), "invalid lines.yaml: 4 problems:") {
		t.Errorf("Error() = %q", err)
	}
}

func TestParse_SyntaxErrorWrapsCause(t *testing.T) {
	_, err := Parse([]byte("apiVersion: palisade/v1\nspec: [\n"), "x.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Err == nil || errors.Unwrap(err) != ve.Err {
		t.Fatalf("err = %#v, want a ValidationError wrapping the YAML error", err)
	}
	if ve.Problems[0].Line == 0 {
		t.Errorf("syntax error without a line: %v", ve.Problems[0])
	}
}

func TestParse_StopsAtMaxProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString(doc("  exec:\n    deny:\n"))
	for range MaxListLength {
		b.WriteString("      - relative\n")
	}
	_, err := Parse([]byte(b.String()), "many.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if len(ve.Problems) != MaxProblems || !strings.Contains(ve.Problems[MaxProblems-1].Message, "too many problems") {
		t.Errorf("got %d problems, last %v", len(ve.Problems), ve.Problems[len(ve.Problems)-1])
	}
}

func TestParse_SourceAndDigest(t *testing.T) {
	p, err := Parse(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source() != "example.yaml" || len(p.SHA256()) != 64 {
		t.Errorf("Source = %q, SHA256 = %q", p.Source(), p.SHA256())
	}
	if p.Metadata == nil || p.Files[1].Mode != palisadev1.Mode_MODE_AUDIT || p.Exec.Mode != palisadev1.Mode_MODE_UNSPECIFIED {
		t.Errorf("policy = %+v", p)
	}
}

// The operator reference shows the example; keep the two in step.
func TestExample_MatchesDocs(t *testing.T) {
	docs, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	ex := string(Example())
	body := ex[strings.Index(ex, "apiVersion:"):]
	if !strings.Contains(string(docs), "```yaml\n"+body+"```") {
		t.Error("docs/policy.md does not show internal/policy/example.yaml (from apiVersion on)")
	}
}

// The API returns problems as JSON; the cause stays out of it.
func TestValidationError_JSON(t *testing.T) {
	_, err := Parse([]byte(doc("  network: {deny: [foo]}\n")), "api")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	got, jerr := json.Marshal(ve)
	if jerr != nil {
		t.Fatal(jerr)
	}
	want := `{"source":"api","problems":[{"path":"spec.network.deny[0]","line":6,"message":"\"foo\" is not a CIDR"}]}`
	if string(got) != want {
		t.Errorf("JSON = %s\nwant %s", got, want)
	}
}
