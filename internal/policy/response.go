package policy

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Response defaults, used when a policy has no spec.response.
const (
	DefaultResponseWindow = 10 * time.Minute
	MaxResponseWindow     = 7 * 24 * time.Hour
)

// ResponsePolicy is spec.response: what the controller does on its own
// when alerts arrive.
type ResponsePolicy struct {
	DryRun bool
	Window time.Duration
	Rules  []ResponseRule
	set    bool // the document had spec.response
}

// ResponseRule is one entry of spec.response.actions.
type ResponseRule struct {
	MinSeverity string
	Rule        string
	HostLabels  map[string]string
	Action      string // quarantine or none
}

const responseActions = "quarantine, none"

// DefaultResponse is the controller's response when the policy names
// none: quarantine the host on any critical alert.
func DefaultResponse() *palisadev1.ResponsePolicy {
	return &palisadev1.ResponsePolicy{
		WindowSeconds: uint32(DefaultResponseWindow / time.Second),
		Rules:         []*palisadev1.ResponseRule{{MinSeverity: "critical", Action: "quarantine"}},
	}
}

// SeverityRank orders severities (0 for an unknown one).
func SeverityRank(s string) int {
	switch s {
	case "info":
		return 1
	case "low":
		return 2
	case "medium":
		return 3
	case "high":
		return 4
	case "critical":
		return 5
	}
	return 0
}

func (w walker) response(n *yaml.Node, path string) ResponsePolicy {
	rp := ResponsePolicy{Window: DefaultResponseWindow, set: true}
	f := w.fields(n, path, "dryRun", "window", "actions")
	if f == nil {
		return rp
	}
	if v := f["dryRun"]; v != nil && w.is(v, yaml.ScalarNode, "true or false", join(path, "dryRun")) {
		if v.ShortTag() != "!!bool" || v.Decode(&rp.DryRun) != nil {
			w.addf(join(path, "dryRun"), v.Line, "expected true or false, got %s", describe(v))
		}
	}
	if v := f["window"]; v != nil {
		if s, ok := w.str(v, join(path, "window")); ok {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > MaxResponseWindow {
				w.addf(join(path, "window"), v.Line, "%q is not a duration within (0, %s]", s, MaxResponseWindow)
			} else {
				rp.Window = d
			}
		}
	}
	if v := f["actions"]; v != nil {
		for i, e := range w.seq(v, join(path, "actions"), MaxRules) {
			p := index(join(path, "actions"), i)
			ef := w.fields(e, p, "minSeverity", "rule", "hostLabels", "action")
			if ef == nil {
				continue
			}
			var r ResponseRule
			if s := w.required(ef, e, p, "minSeverity"); s != nil {
				if str, ok := w.str(s, join(p, "minSeverity")); ok {
					if !knownSeverity(str) {
						w.addf(join(p, "minSeverity"), s.Line, "%q is not a severity (want one of %s)", str, severityValues)
					}
					r.MinSeverity = str
				}
			}
			if s := ef["rule"]; s != nil {
				if str, ok := w.str(s, join(p, "rule")); ok {
					if msg := checkRuleName(str); msg != "" {
						w.addf(join(p, "rule"), s.Line, "%s", msg)
					}
					r.Rule = str
				}
			}
			if s := ef["hostLabels"]; s != nil {
				r.HostLabels = w.labels(s, join(p, "hostLabels"))
			}
			if s := w.required(ef, e, p, "action"); s != nil {
				if str, ok := w.str(s, join(p, "action")); ok {
					if str != "quarantine" && str != "none" {
						w.addf(join(p, "action"), s.Line, "%q is not a response action (want one of %s)", str, responseActions)
					}
					r.Action = str
				}
			}
			rp.Rules = append(rp.Rules, r)
		}
	}
	return rp
}

// labels reads a mapping of label keys to values.
func (w walker) labels(n *yaml.Node, path string) map[string]string {
	if !w.is(n, yaml.MappingNode, "a mapping", path) {
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := w.str(k, path)
		if !ok {
			continue
		}
		p := join(path, key)
		if msg := checkLabel(key, ""); msg != "" {
			w.addf(p, k.Line, "%s", msg)
		}
		if val, ok := w.str(v, p); ok {
			if msg := checkLabel(key, val); msg != "" {
				w.addf(p, v.Line, "%s", msg)
			}
			out[key] = val
		}
	}
	return out
}

// checkLabel checks a label key (and value when given).
func checkLabel(k, v string) string {
	if k == "" || len(k) > 63 || strings.ContainsAny(k, "= \t\n\x00") {
		return fmt.Sprintf("label key %q must be 1-63 characters without spaces or '='", k)
	}
	if msg := basicString(v, 255); msg != "" {
		return msg
	}
	return ""
}

func (rp ResponsePolicy) compile() *palisadev1.ResponsePolicy {
	if !rp.set {
		return DefaultResponse()
	}
	out := &palisadev1.ResponsePolicy{DryRun: rp.DryRun, WindowSeconds: uint32(rp.Window / time.Second)}
	for _, r := range rp.Rules {
		var labels map[string]string
		if len(r.HostLabels) > 0 {
			labels = make(map[string]string, len(r.HostLabels))
			for k, v := range r.HostLabels {
				labels[k] = v
			}
		}
		out.Rules = append(out.Rules, &palisadev1.ResponseRule{MinSeverity: r.MinSeverity, Rule: r.Rule, HostLabels: labels, Action: r.Action})
	}
	return out
}

// validateResponse re-checks a bundle's response policy.
func (ps *problems) validateResponse(rp *palisadev1.ResponsePolicy) {
	if rp == nil {
		return
	}
	if w := time.Duration(rp.GetWindowSeconds()) * time.Second; w <= 0 || w > MaxResponseWindow {
		ps.addf("response.window_seconds", 0, "%d is not within (0, %s]", rp.GetWindowSeconds(), MaxResponseWindow)
	}
	if len(rp.GetRules()) > MaxRules {
		ps.addf("response.rules", 0, "has %d entries; at most %d allowed", len(rp.GetRules()), MaxRules)
		return
	}
	for i, r := range rp.GetRules() {
		p := index("response.rules", i)
		if !knownSeverity(r.GetMinSeverity()) {
			ps.addf(p+".min_severity", 0, "%q is not a severity (want one of %s)", r.GetMinSeverity(), severityValues)
		}
		if r.GetRule() != "" {
			if msg := checkRuleName(r.GetRule()); msg != "" {
				ps.addf(p+".rule", 0, "%s", msg)
			}
		}
		if a := r.GetAction(); a != "quarantine" && a != "none" {
			ps.addf(p+".action", 0, "%q is not a response action (want one of %s)", a, responseActions)
		}
		for k, v := range r.GetHostLabels() {
			if msg := checkLabel(k, v); msg != "" {
				ps.addf(p+".host_labels", 0, "%s", msg)
			}
		}
	}
}
