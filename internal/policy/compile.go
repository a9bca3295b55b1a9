package policy

import (
	"errors"
	"fmt"
	"slices"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Compile parses, validates and compiles one policy document; it is
// Parse followed by (*Policy).Compile.
func Compile(data []byte, source string) (*palisadev1.PolicyBundle, error) {
	p, err := Parse(data, source)
	if err != nil {
		return nil, err
	}
	return p.Compile()
}

// Compile turns a parsed policy into the bundle agents enforce: every
// element carries its effective mode (never MODE_UNSPECIFIED), every
// element message is present (empty lists when the document omits it),
// rules carry the document's source name and their line, and
// source_sha256 is the sha256 of the raw document. Version and created_at
// are left unset: the controller assigns them. The result is checked with
// ValidateBundle before it is returned, so a Policy modified after Parse
// cannot produce a bundle an agent would reject.
func (p *Policy) Compile() (*palisadev1.PolicyBundle, error) {
	if p == nil || p.sha256 == "" {
		return nil, errors.New("policy: Compile needs a *Policy returned by Parse")
	}
	eff := func(m palisadev1.Mode) palisadev1.Mode {
		if m == palisadev1.Mode_MODE_UNSPECIFIED {
			return p.Mode
		}
		return m
	}
	b := &palisadev1.PolicyBundle{
		Name:         p.Name,
		SourceSha256: p.sha256,
		DefaultMode:  p.Mode,
		Metadata:     &palisadev1.MetadataPolicy{Mode: p.Mode},
		Exec:         &palisadev1.ExecPolicy{Deny: slices.Clone(p.Exec.Deny), Mode: eff(p.Exec.Mode)},
		Network:      &palisadev1.NetworkPolicy{Deny: slices.Clone(p.Network.Deny), Mode: eff(p.Network.Mode)},
		Quarantine:   &palisadev1.QuarantinePolicy{Enabled: p.Quarantine.Enabled, Allow: slices.Clone(p.Quarantine.Allow)},
		Response:     p.Response.compile(),
	}
	for _, f := range p.Files {
		b.ProtectedFiles = append(b.ProtectedFiles, &palisadev1.ProtectedFiles{
			Paths:   slices.Clone(f.Paths),
			Readers: slices.Clone(f.Readers),
			Mode:    eff(f.Mode),
		})
	}
	if m := p.Metadata; m != nil {
		b.Metadata = &palisadev1.MetadataPolicy{
			Endpoints: slices.Clone(m.Endpoints),
			Clients:   slices.Clone(m.Clients),
			Mode:      eff(m.Mode),
		}
	}
	for _, h := range p.Honeytokens {
		b.Honeytokens = append(b.Honeytokens, &palisadev1.Honeytoken{Path: h.Path, Provider: h.Provider})
	}
	for _, r := range p.Rules {
		resp := r.Response
		if resp == "" {
			resp = "none"
		}
		b.Rules = append(b.Rules, &palisadev1.Rule{
			Name:        r.Name,
			Description: r.Description,
			Condition:   r.Condition,
			Severity:    r.Severity,
			Mode:        eff(r.Mode),
			Response:    resp,
			SourceFile:  p.source,
			SourceLine:  int32(min(r.Line, 1<<31-1)),
		})
	}
	if err := ValidateBundle(b); err != nil {
		return nil, fmt.Errorf("policy %s: compiled bundle failed validation: %w", p.source, err)
	}
	return b, nil
}
