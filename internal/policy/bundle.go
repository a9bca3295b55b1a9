package policy

import (
	"fmt"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// ValidateBundle re-checks a bundle received over the wire, with the rules
// Parse applies to documents, and returns a *ValidationError listing every
// problem (paths use protobuf field names: "network.deny[1]"). An agent
// must not apply a bundle that fails. Beyond the document rules it
// requires what Compile guarantees: a name and source_sha256, every
// present element's mode set (not MODE_UNSPECIFIED), values in canonical
// form (masked CIDRs, normalized endpoints), rule responses explicit.
// Absent element messages (nil exec, network, ...) mean "nothing to
// enforce" and are accepted. Version and created_at are not judged,
// except that a created_at present must be a valid timestamp.
func ValidateBundle(b *palisadev1.PolicyBundle) error {
	var ps problems
	if b == nil {
		ps.addf("", 0, "bundle is nil")
		return ps.err("bundle", nil)
	}
	source := "bundle"
	if b.GetName() != "" && checkPolicyName(b.GetName()) == "" {
		source = fmt.Sprintf("bundle %q version %d", b.GetName(), b.GetVersion())
	}
	if msg := checkPolicyName(b.GetName()); msg != "" {
		ps.addf("name", 0, "%s", msg)
	}
	if !isLowerHex(b.GetSourceSha256(), 64) {
		ps.addf("source_sha256", 0, "%q is not 64 lowercase hex digits", b.GetSourceSha256())
	}
	if b.CreatedAt != nil {
		if err := b.CreatedAt.CheckValid(); err != nil {
			ps.addf("created_at", 0, "invalid timestamp: %v", err)
		}
	}
	bmode := func(m palisadev1.Mode, path string) {
		if m != palisadev1.Mode_MODE_AUDIT && m != palisadev1.Mode_MODE_ENFORCE {
			ps.addf(path, 0, "mode %s is not MODE_AUDIT or MODE_ENFORCE", m)
		}
	}
	bmode(b.GetDefaultMode(), "default_mode")

	list := func(vals []string, path string) []item {
		if len(vals) > MaxListLength {
			ps.addf(path, 0, "has %d entries; at most %d allowed", len(vals), MaxListLength)
			return nil
		}
		out := make([]item, len(vals))
		for i, v := range vals {
			out[i] = item{s: v, path: index(path, i)}
		}
		return out
	}

	if n := len(b.GetProtectedFiles()); n > MaxFileEntries {
		ps.addf("protected_files", 0, "has %d entries; at most %d allowed", n, MaxFileEntries)
	} else {
		seen := map[string]item{}
		for i, f := range b.GetProtectedFiles() {
			p := index("protected_files", i)
			if f == nil {
				ps.addf(p, 0, "entry is nil")
				continue
			}
			if len(f.GetPaths()) == 0 {
				ps.addf(p+".paths", 0, "must list at least one path")
			}
			ps.checkItems(list(f.GetPaths(), p+".paths"), checkGlobPath, true, seen)
			ps.checkItems(list(f.GetReaders(), p+".readers"), checkExe, true, nil)
			bmode(f.GetMode(), p+".mode")
		}
	}
	if m := b.GetMetadata(); m != nil {
		if len(m.GetEndpoints()) == 0 && len(m.GetClients()) > 0 {
			ps.addf("metadata.endpoints", 0, "must list at least one endpoint when clients are listed")
		}
		ps.checkItems(list(m.GetEndpoints(), "metadata.endpoints"), checkEndpoint, true, nil)
		ps.checkItems(list(m.GetClients(), "metadata.clients"), checkExe, true, nil)
		bmode(m.GetMode(), "metadata.mode")
	}
	if n := len(b.GetHoneytokens()); n > MaxListLength {
		ps.addf("honeytokens", 0, "has %d entries; at most %d allowed", n, MaxListLength)
	} else {
		seen := map[string]item{}
		for i, h := range b.GetHoneytokens() {
			p := index("honeytokens", i)
			if h == nil {
				ps.addf(p, 0, "entry is nil")
				continue
			}
			ps.checkItems([]item{{s: h.GetPath(), path: p + ".path"}}, checkPlainPath, true, seen)
			if !knownProvider(h.GetProvider()) {
				ps.addf(p+".provider", 0, "%q is not a known provider (want one of %s)", h.GetProvider(), providerValues)
			}
		}
	}
	if e := b.GetExec(); e != nil {
		ps.checkItems(list(e.GetDeny(), "exec.deny"), checkExe, true, nil)
		bmode(e.GetMode(), "exec.mode")
	}
	if n := b.GetNetwork(); n != nil {
		ps.checkItems(list(n.GetDeny(), "network.deny"), checkCIDR, true, nil)
		bmode(n.GetMode(), "network.mode")
	}
	if q := b.GetQuarantine(); q != nil {
		ps.checkItems(list(q.GetAllow(), "quarantine.allow"), checkEndpoint, true, nil)
	}
	ps.checkItems(list(b.GetIocs(), "iocs"), checkIOC, true, nil)
	ps.validateResponse(b.GetResponse())
	if n := len(b.GetLeakedKeys()); n > MaxListLength {
		ps.addf("leaked_keys", 0, "has %d entries; at most %d allowed", n, MaxListLength)
	}
	for i, k := range b.GetLeakedKeys() {
		p := index("leaked_keys", i)
		if !isLowerHex(k.GetSha256(), 64) {
			ps.addf(p+".sha256", 0, "%q is not 64 lowercase hex digits", k.GetSha256())
		}
		if k.GetLength() < 8 || k.GetLength() > 128 || len(k.GetPrefix()) > int(k.GetLength()) || basicString(k.GetPrefix(), 16) != "" {
			ps.addf(p, 0, "prefix %q and length %d do not describe a key id", k.GetPrefix(), k.GetLength())
		}
		if msg := basicString(k.GetMasked(), 128); msg != "" {
			ps.addf(p+".masked", 0, "%s", msg)
		}
	}
	if n := len(b.GetRules()); n > MaxRules {
		ps.addf("rules", 0, "has %d entries; at most %d allowed", n, MaxRules)
	} else {
		names := map[string]string{}
		for i, r := range b.GetRules() {
			p := index("rules", i)
			if r == nil {
				ps.addf(p, 0, "entry is nil")
				continue
			}
			if msg := checkRuleName(r.GetName()); msg != "" {
				ps.addf(p+".name", 0, "%s", msg)
			} else if first, dup := names[r.GetName()]; dup {
				ps.addf(p+".name", 0, "rule name %q is already used by %s", r.GetName(), first)
			} else {
				names[r.GetName()] = p
			}
			if msg := basicString(r.GetDescription(), MaxDescriptionLength); msg != "" {
				ps.addf(p+".description", 0, "%s", msg)
			}
			if msg := checkCondition(r.GetCondition()); msg != "" {
				ps.addf(p+".condition", 0, "%s", msg)
			}
			if !knownSeverity(r.GetSeverity()) {
				ps.addf(p+".severity", 0, "%q is not a severity (want one of %s)", r.GetSeverity(), severityValues)
			}
			if !knownResponse(r.GetResponse()) {
				ps.addf(p+".response", 0, "%q is not a response (want one of %s)", r.GetResponse(), responseValues)
			}
			bmode(r.GetMode(), p+".mode")
			if msg := basicString(r.GetSourceFile(), MaxPathLength); msg != "" {
				ps.addf(p+".source_file", 0, "%s", msg)
			}
			if r.GetSourceLine() < 0 {
				ps.addf(p+".source_line", 0, "%d is negative", r.GetSourceLine())
			}
		}
	}
	return ps.err(source, nil)
}
