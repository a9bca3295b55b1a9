// Package policy parses, validates and compiles Palisade policy documents:
// the YAML operators write (format in docs/policy.md) into the
// *palisadev1.PolicyBundle agents enforce.
//
// The API:
//
//	Parse(data []byte, source string) (*Policy, error)       // decode + validate
//	(*Policy).Compile() (*palisadev1.PolicyBundle, error)    // resolve modes, build bundle
//	Compile(data []byte, source string) (*palisadev1.PolicyBundle, error) // both
//	ValidateBundle(b *palisadev1.PolicyBundle) error         // re-check a bundle from the wire
//	Example() []byte                                         // a valid example document
//
// Every failure of Parse, Compile and ValidateBundle is a *ValidationError
// listing every problem found (up to MaxProblems), each with its path
// ("spec.network.deny[1]") and, for documents, its line. Nothing of an
// invalid document is returned.
//
// Choices worth knowing:
//
//   - Decoding walks a yaml.Node tree against the schema by hand, so that
//     unknown keys, duplicate keys and wrong types are reported with path
//     and line instead of silently ignored. A key with a null value
//     ("deny:") means the same as an absent key. YAML aliases, merge keys
//     and multi-document streams are rejected: a policy is one plain
//     document, and aliases are the road to billion-laughs inputs.
//   - spec.mode is required: a policy that kills processes should say so.
//     Per-element modes override it; Compile writes the effective mode into
//     every element, so no bundle carries MODE_UNSPECIFIED.
//   - Duplicates are errors, not silently dropped: a duplicate is usually a
//     copy-and-paste mistake, and a path protected by two files entries
//     would make its allowed readers ambiguous. CIDRs and endpoints are
//     compared after normalization ("203.0.113.7/24" duplicates
//     "203.0.113.0/24").
//   - Values are normalized by Parse (masked CIDRs, netip endpoint form);
//     ValidateBundle requires that form, so an agent never has to
//     normalize.
//   - Rule conditions are CEL source and are not compiled here; the rules
//     engine does that and reports errors with the rule's source_file and
//     source_line (the line of the rule's entry).
//   - The bundle's version and created_at are the controller's to assign;
//     Compile leaves them unset, which keeps it deterministic.
package policy
