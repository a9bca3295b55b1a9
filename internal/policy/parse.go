package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Policy is a validated policy document. Obtain one from Parse; Compile
// turns it into the bundle agents enforce. Element modes are as written:
// MODE_UNSPECIFIED means "inherit Mode" and is resolved by Compile.
type Policy struct {
	Name        string
	Mode        palisadev1.Mode // spec.mode: MODE_AUDIT or MODE_ENFORCE
	Files       []ProtectedFiles
	Metadata    *MetadataPolicy // nil when spec.credentials.metadata is absent
	Honeytokens []Honeytoken
	Exec        ExecPolicy
	Network     NetworkPolicy
	Quarantine  QuarantinePolicy
	Rules       []Rule
	Response    ResponsePolicy

	source string // Parse's source argument
	sha256 string // hex sha256 of the raw document
}

// ProtectedFiles is one entry of spec.credentials.files.
type ProtectedFiles struct {
	Paths   []string // absolute, clean, may hold *, ? and [...] globs
	Readers []string // absolute exe paths or sha256:<hex>; empty: no process may open
	Mode    palisadev1.Mode
}

// MetadataPolicy is spec.credentials.metadata.
type MetadataPolicy struct {
	Endpoints []string // canonical "ip:port"
	Clients   []string // absolute exe paths or sha256:<hex>
	Mode      palisadev1.Mode
}

// Honeytoken is one entry of spec.credentials.honeytokens.
type Honeytoken struct {
	Path     string // absolute, clean, no globs
	Provider string // alibaba, aws or generic
}

// ExecPolicy is spec.exec.
type ExecPolicy struct {
	Deny []string // absolute exe paths or sha256:<hex>
	Mode palisadev1.Mode
}

// NetworkPolicy is spec.network.
type NetworkPolicy struct {
	Deny []string // masked CIDRs
	Mode palisadev1.Mode
}

// QuarantinePolicy is spec.quarantine.
type QuarantinePolicy struct {
	Enabled bool
	Allow   []string // canonical "ip:port"
}

// Rule is one entry of spec.rules. Condition is CEL source, not compiled
// here.
type Rule struct {
	Name        string
	Description string
	Condition   string
	Severity    string // info, low, medium, high, critical
	Response    string // none (the default), kill, kill_tree, block
	Mode        palisadev1.Mode
	Line        int // line of the rule in the document
}

// Source is the source name given to Parse.
func (p *Policy) Source() string { return p.source }

// SHA256 is the lowercase hex sha256 of the document Parse read.
func (p *Policy) SHA256() string { return p.sha256 }

// Parse decodes and validates one policy document. source names it in
// problems and in compiled rules (a file name, "api", ...). On any problem
// it returns nil and a *ValidationError listing every problem found.
func Parse(data []byte, source string) (*Policy, error) {
	var ps problems
	if len(data) > MaxDocumentSize {
		ps.addf("", 0, "document is %d bytes; at most %d allowed", len(data), MaxDocumentSize)
		return nil, ps.err(source, nil)
	}
	root, err := decodeOne(data, &ps)
	if err != nil || root == nil {
		return nil, ps.err(source, err)
	}
	w := walker{problems: &ps}
	p := w.policy(root)
	if err := ps.err(source, nil); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.source = source
	p.sha256 = hex.EncodeToString(sum[:])
	return p, nil
}

// decodeOne decodes exactly one YAML document into a node tree. Problems
// go to ps; a YAML syntax error is also returned as the cause.
func decodeOne(data []byte, ps *problems) (root *yaml.Node, err error) {
	// The decoder is third-party code fed untrusted bytes: a panic in it
	// must become a rejected document, not a crashed controller or agent.
	defer func() {
		if r := recover(); r != nil {
			root = nil
			err = fmt.Errorf("yaml decoder panic: %v", r)
			ps.addf("", 0, "cannot decode YAML: %v", err)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.addf("", 0, "document is empty")
			return nil, nil
		}
		line, msg := yamlErr(err)
		ps.addf("", line, "invalid YAML: %s", msg)
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		line, msg := yamlErr(err)
		ps.addf("", line, "invalid YAML: %s", msg)
		return nil, err
	default:
		ps.addf("", extra.Line, "more than one YAML document; a policy file holds exactly one")
		return nil, nil
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	ps.addf("", doc.Line, "document is empty")
	return nil, nil
}

// yamlErr splits yaml.v3's "yaml: line N: msg" syntax errors into N and
// msg; other errors come back whole with line 0.
func yamlErr(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, text, ok := strings.Cut(rest, ": ")
	n, aerr := strconv.Atoi(num)
	if !ok || aerr != nil {
		return 0, msg
	}
	return n, text
}

// walker checks a node tree against the document schema while building a
// Policy. It never stops at the first problem.
type walker struct {
	*problems
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		default:
			return "a value tagged " + n.ShortTag()
		}
	}
	return "an unexpected node"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// is reports whether n has the wanted kind, and records a problem if not.
func (w walker) is(n *yaml.Node, kind yaml.Kind, want, path string) bool {
	if n.Kind == yaml.AliasNode {
		w.addf(path, n.Line, "YAML aliases are not supported")
		return false
	}
	if n.Kind != kind {
		w.addf(path, n.Line, "expected %s, got %s", want, describe(n))
		return false
	}
	return true
}

// fields checks that n is a mapping with only the known keys, each once,
// and returns the non-null values by key. It returns nil if n is not a
// mapping.
func (w walker) fields(n *yaml.Node, path string, known ...string) map[string]*yaml.Node {
	if !w.is(n, yaml.MappingNode, "a mapping", path) {
		return nil
	}
	out := make(map[string]*yaml.Node, len(known))
	seen := make(map[string]bool, len(known))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			if k.ShortTag() == "!!merge" {
				w.addf(path, k.Line, "YAML merge keys (<<) are not supported")
			} else {
				w.addf(path, k.Line, "keys must be strings, got %s", describe(k))
			}
			continue
		}
		p := join(path, k.Value)
		switch {
		case seen[k.Value]:
			w.addf(p, k.Line, "duplicate key")
			continue
		case !slices.Contains(known, k.Value):
			w.addf(p, k.Line, "unknown field %q (known: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		seen[k.Value] = true
		if isNull(v) {
			continue // "key:" and "key: ~" mean the same as no key
		}
		out[k.Value] = v
	}
	return out
}

// required returns f[key], recording a problem if it is absent.
func (w walker) required(f map[string]*yaml.Node, parent *yaml.Node, path, key string) *yaml.Node {
	v := f[key]
	if v == nil {
		w.addf(join(path, key), parent.Line, "required field is missing")
	}
	return v
}

// str returns the string value of a scalar node.
func (w walker) str(n *yaml.Node, path string) (string, bool) {
	if !w.is(n, yaml.ScalarNode, "a string", path) {
		return "", false
	}
	if n.ShortTag() != "!!str" {
		w.addf(path, n.Line, "expected a string, got %s (quote it?)", describe(n))
		return "", false
	}
	return n.Value, true
}

// seq returns the elements of a list of at most max entries.
func (w walker) seq(n *yaml.Node, path string, max int) []*yaml.Node {
	if !w.is(n, yaml.SequenceNode, "a list", path) {
		return nil
	}
	if len(n.Content) > max {
		w.addf(path, n.Line, "has %d entries; at most %d allowed", len(n.Content), max)
		return nil
	}
	return n.Content
}

// strs returns the string elements of a list, with their paths and lines.
func (w walker) strs(n *yaml.Node, path string) []item {
	if n == nil {
		return nil
	}
	var out []item
	for i, e := range w.seq(n, path, MaxListLength) {
		p := index(path, i)
		if s, ok := w.str(e, p); ok {
			out = append(out, item{s: s, path: p, line: e.Line})
		}
	}
	return out
}

// mode returns the mode at n, MODE_UNSPECIFIED when n is nil (inherit).
func (w walker) mode(n *yaml.Node, path string) palisadev1.Mode {
	if n == nil {
		return palisadev1.Mode_MODE_UNSPECIFIED
	}
	s, ok := w.str(n, path)
	if !ok {
		return palisadev1.Mode_MODE_UNSPECIFIED
	}
	m, ok := parseMode(s)
	if !ok {
		w.addf(path, n.Line, "%q is not a mode (want enforce or audit)", s)
	}
	return m
}

func (w walker) policy(root *yaml.Node) *Policy {
	p := &Policy{}
	f := w.fields(root, "", "apiVersion", "kind", "metadata", "spec")
	if f == nil {
		return p
	}
	if v := w.required(f, root, "", "apiVersion"); v != nil {
		if s, ok := w.str(v, "apiVersion"); ok && s != APIVersion {
			w.addf("apiVersion", v.Line, "%q is not supported (want %q)", s, APIVersion)
		}
	}
	if v := w.required(f, root, "", "kind"); v != nil {
		if s, ok := w.str(v, "kind"); ok && s != Kind {
			w.addf("kind", v.Line, "%q is not supported (want %q)", s, Kind)
		}
	}
	if v := w.required(f, root, "", "metadata"); v != nil {
		if mf := w.fields(v, "metadata", "name"); mf != nil {
			if n := w.required(mf, v, "metadata", "name"); n != nil {
				if s, ok := w.str(n, "metadata.name"); ok {
					if msg := checkPolicyName(s); msg != "" {
						w.addf("metadata.name", n.Line, "%s", msg)
					}
					p.Name = s
				}
			}
		}
	}
	if v := w.required(f, root, "", "spec"); v != nil {
		w.spec(v, p)
	}
	return p
}

func (w walker) spec(n *yaml.Node, p *Policy) {
	const path = "spec"
	f := w.fields(n, path, "mode", "credentials", "exec", "network", "quarantine", "rules", "response")
	if f == nil {
		return
	}
	if m := w.required(f, n, path, "mode"); m != nil {
		p.Mode = w.mode(m, "spec.mode")
	}
	// Paths and executables are compared across entries: the same file in
	// two entries would make its allowed readers ambiguous.
	if c := f["credentials"]; c != nil {
		cf := w.fields(c, "spec.credentials", "files", "metadata", "honeytokens")
		if v := cf["files"]; v != nil {
			p.Files = w.files(v, "spec.credentials.files")
		}
		if v := cf["metadata"]; v != nil {
			p.Metadata = w.metadata(v, "spec.credentials.metadata")
		}
		if v := cf["honeytokens"]; v != nil {
			p.Honeytokens = w.honeytokens(v, "spec.credentials.honeytokens")
		}
	}
	if v := f["exec"]; v != nil {
		ef := w.fields(v, "spec.exec", "deny", "mode")
		p.Exec.Deny = w.checkItems(w.strs(ef["deny"], "spec.exec.deny"), checkExe, false, nil)
		p.Exec.Mode = w.mode(ef["mode"], "spec.exec.mode")
	}
	if v := f["network"]; v != nil {
		nf := w.fields(v, "spec.network", "deny", "mode")
		p.Network.Deny = w.checkItems(w.strs(nf["deny"], "spec.network.deny"), checkCIDR, false, nil)
		p.Network.Mode = w.mode(nf["mode"], "spec.network.mode")
	}
	if v := f["quarantine"]; v != nil {
		qf := w.fields(v, "spec.quarantine", "enabled", "allow")
		if e := qf["enabled"]; e != nil && w.is(e, yaml.ScalarNode, "true or false", "spec.quarantine.enabled") {
			if e.ShortTag() != "!!bool" || e.Decode(&p.Quarantine.Enabled) != nil {
				w.addf("spec.quarantine.enabled", e.Line, "expected true or false, got %s", describe(e))
			}
		}
		p.Quarantine.Allow = w.checkItems(w.strs(qf["allow"], "spec.quarantine.allow"), checkEndpoint, false, nil)
	}
	if v := f["rules"]; v != nil {
		p.Rules = w.rules(v, "spec.rules")
	}
	if v := f["response"]; v != nil {
		p.Response = w.response(v, "spec.response")
	}
}

func (w walker) files(n *yaml.Node, path string) []ProtectedFiles {
	var out []ProtectedFiles
	seenPaths := map[string]item{}
	for i, e := range w.seq(n, path, MaxFileEntries) {
		p := index(path, i)
		f := w.fields(e, p, "paths", "readers", "mode")
		if f == nil {
			continue
		}
		var pf ProtectedFiles
		if v := w.required(f, e, p, "paths"); v != nil {
			items := w.strs(v, join(p, "paths"))
			if len(items) == 0 && v.Kind == yaml.SequenceNode {
				w.addf(join(p, "paths"), v.Line, "must list at least one path")
			}
			pf.Paths = w.checkItems(items, checkGlobPath, false, seenPaths)
		}
		pf.Readers = w.checkItems(w.strs(f["readers"], join(p, "readers")), checkExe, false, nil)
		pf.Mode = w.mode(f["mode"], join(p, "mode"))
		out = append(out, pf)
	}
	return out
}

func (w walker) metadata(n *yaml.Node, path string) *MetadataPolicy {
	f := w.fields(n, path, "endpoints", "clients", "mode")
	if f == nil {
		return nil
	}
	m := &MetadataPolicy{}
	if v := w.required(f, n, path, "endpoints"); v != nil {
		items := w.strs(v, join(path, "endpoints"))
		if len(items) == 0 && v.Kind == yaml.SequenceNode {
			w.addf(join(path, "endpoints"), v.Line, "must list at least one endpoint")
		}
		m.Endpoints = w.checkItems(items, checkEndpoint, false, nil)
	}
	m.Clients = w.checkItems(w.strs(f["clients"], join(path, "clients")), checkExe, false, nil)
	m.Mode = w.mode(f["mode"], join(path, "mode"))
	return m
}

func (w walker) honeytokens(n *yaml.Node, path string) []Honeytoken {
	var out []Honeytoken
	seen := map[string]item{}
	for i, e := range w.seq(n, path, MaxListLength) {
		p := index(path, i)
		f := w.fields(e, p, "path", "provider")
		if f == nil {
			continue
		}
		var h Honeytoken
		if v := w.required(f, e, p, "path"); v != nil {
			if s, ok := w.str(v, join(p, "path")); ok {
				w.checkItems([]item{{s, join(p, "path"), v.Line}}, checkPlainPath, false, seen)
				h.Path = s
			}
		}
		if v := w.required(f, e, p, "provider"); v != nil {
			if s, ok := w.str(v, join(p, "provider")); ok {
				if !knownProvider(s) {
					w.addf(join(p, "provider"), v.Line, "%q is not a known provider (want one of %s)", s, providerValues)
				}
				h.Provider = s
			}
		}
		out = append(out, h)
	}
	return out
}

func (w walker) rules(n *yaml.Node, path string) []Rule {
	var out []Rule
	names := map[string]string{}
	for i, e := range w.seq(n, path, MaxRules) {
		p := index(path, i)
		f := w.fields(e, p, "name", "description", "condition", "severity", "mode", "response")
		if f == nil {
			continue
		}
		r := Rule{Line: e.Line, Response: "none"}
		if v := w.required(f, e, p, "name"); v != nil {
			np := join(p, "name")
			if s, ok := w.str(v, np); ok {
				r.Name = s
				if msg := checkRuleName(s); msg != "" {
					w.addf(np, v.Line, "%s", msg)
				} else if first, dup := names[s]; dup {
					w.addf(np, v.Line, "rule name %q is already used by %s", s, first)
				} else {
					names[s] = p
				}
			}
		}
		if v := f["description"]; v != nil {
			if s, ok := w.str(v, join(p, "description")); ok {
				if msg := basicString(s, MaxDescriptionLength); msg != "" {
					w.addf(join(p, "description"), v.Line, "%s", msg)
				}
				r.Description = s
			}
		}
		if v := w.required(f, e, p, "condition"); v != nil {
			if s, ok := w.str(v, join(p, "condition")); ok {
				if msg := checkCondition(s); msg != "" {
					w.addf(join(p, "condition"), v.Line, "%s", msg)
				}
				r.Condition = s
			}
		}
		if v := w.required(f, e, p, "severity"); v != nil {
			if s, ok := w.str(v, join(p, "severity")); ok {
				if !knownSeverity(s) {
					w.addf(join(p, "severity"), v.Line, "%q is not a severity (want one of %s)", s, severityValues)
				}
				r.Severity = s
			}
		}
		if v := f["response"]; v != nil {
			if s, ok := w.str(v, join(p, "response")); ok {
				if !knownResponse(s) {
					w.addf(join(p, "response"), v.Line, "%q is not a response (want one of %s)", s, responseValues)
				}
				r.Response = s
			}
		}
		r.Mode = w.mode(f["mode"], join(p, "mode"))
		out = append(out, r)
	}
	return out
}

func checkCondition(s string) string {
	if strings.TrimSpace(s) == "" {
		return "condition is empty"
	}
	return basicString(s, MaxConditionLength)
}
