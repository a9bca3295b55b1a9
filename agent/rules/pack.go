package rules

import (
	_ "embed"
	"fmt"

	"github.com/palisade-sec/palisade/internal/policy"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

//go:embed default_rules.yaml
var defaultRulesYAML []byte

// DefaultRulesSource names the embedded pack in rules' source_file.
const DefaultRulesSource = "palisade:default_rules.yaml"

// DefaultRules returns the default rule pack, parsed and validated with
// internal/policy like an operator's spec.rules. Rules of the pack that
// set no mode of their own take mode (the bundle's default_mode; pass
// MODE_UNSPECIFIED for the pack's own, enforce).
func DefaultRules(mode palisadev1.Mode) ([]*palisadev1.Rule, error) {
	p, err := policy.Parse(defaultRulesYAML, DefaultRulesSource)
	if err != nil {
		return nil, fmt.Errorf("default rules: %w", err)
	}
	if mode == palisadev1.Mode_MODE_AUDIT || mode == palisadev1.Mode_MODE_ENFORCE {
		p.Mode = mode
	}
	b, err := p.Compile()
	if err != nil {
		return nil, fmt.Errorf("default rules: %w", err)
	}
	return b.GetRules(), nil
}

// Merge returns defaults followed by the bundle's rules; a bundle rule
// with the name of a default rule replaces it (an operator can retune or
// disable — condition: "false" — a default rule by name).
func Merge(defaults, bundle []*palisadev1.Rule) []*palisadev1.Rule {
	byName := map[string]*palisadev1.Rule{}
	for _, r := range bundle {
		byName[r.GetName()] = r
	}
	var out []*palisadev1.Rule
	for _, r := range defaults {
		if o, ok := byName[r.GetName()]; ok {
			out = append(out, o)
			delete(byName, r.GetName())
			continue
		}
		out = append(out, r)
	}
	for _, r := range bundle {
		if _, ok := byName[r.GetName()]; ok {
			out = append(out, r)
		}
	}
	return out
}
