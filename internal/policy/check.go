package policy

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Limits. A document or bundle beyond them is rejected with a problem that
// names the limit.
const (
	// MaxDocumentSize is the largest policy document Parse accepts.
	MaxDocumentSize = 1 << 20
	// MaxListLength bounds every list of strings (paths, readers, clients,
	// endpoints, deny, allow) and the honeytoken list.
	MaxListLength = 1024
	// MaxFileEntries bounds spec.credentials.files.
	MaxFileEntries = 256
	// MaxRules bounds spec.rules.
	MaxRules = 512
	// MaxPathLength is PATH_MAX.
	MaxPathLength = 4096
	// MaxConditionLength bounds a rule's CEL source.
	MaxConditionLength = 16 << 10
	// MaxDescriptionLength bounds a rule's description.
	MaxDescriptionLength = 1 << 10
	// MaxProblems bounds the problems one error lists.
	MaxProblems = 200
)

// Fixed document header values.
const (
	APIVersion = "palisade/v1"
	Kind       = "Policy"
)

// A checker validates one string and returns its canonical form, or a
// message saying what is wrong with it. Parse stores the canonical form;
// ValidateBundle requires it.
type checker func(s string) (canon string, msg string)

func basicString(s string, maxLen int) string {
	switch {
	case !utf8.ValidString(s):
		return fmt.Sprintf("%q is not valid UTF-8", s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Sprintf("%q contains a NUL byte", s)
	case len(s) > maxLen:
		return fmt.Sprintf("is %d bytes long; at most %d allowed", len(s), maxLen)
	}
	return ""
}

// absPath checks what every path shares: absolute, clean, no "..".
func absPath(s string) string {
	if s == "" {
		return "path is empty"
	}
	if m := basicString(s, MaxPathLength); m != "" {
		return m
	}
	if strings.HasPrefix(s, "~") {
		return fmt.Sprintf("%q is not absolute: \"~\" is not expanded; write /root/... or /home/*/...", s)
	}
	if !strings.HasPrefix(s, "/") {
		return fmt.Sprintf("%q is not an absolute path", s)
	}
	for _, elem := range strings.Split(s, "/") {
		if elem == ".." {
			return fmt.Sprintf("%q must not contain \"..\"", s)
		}
	}
	if c := path.Clean(s); c != s {
		return fmt.Sprintf("%q is not a clean path (want %q)", s, c)
	}
	return ""
}

// checkGlobPath accepts an absolute clean path that may hold the glob
// metacharacters of path.Match: "*", "?" and "[...]" (no "\" escapes,
// no "**").
func checkGlobPath(s string) (string, string) {
	if m := absPath(s); m != "" {
		return s, m
	}
	if strings.Contains(s, `\`) {
		return s, fmt.Sprintf("%q: backslash escapes are not supported in globs", s)
	}
	if strings.Contains(s, "**") {
		return s, fmt.Sprintf("%q: \"**\" is not supported; \"*\" matches within one path element", s)
	}
	if _, err := path.Match(s, ""); err != nil {
		return s, fmt.Sprintf("%q is not a valid glob: %v", s, err)
	}
	return s, ""
}

// checkPlainPath accepts an absolute clean path without glob
// metacharacters.
func checkPlainPath(s string) (string, string) {
	if m := absPath(s); m != "" {
		return s, m
	}
	if strings.ContainsAny(s, "*?[") {
		return s, fmt.Sprintf("%q: glob characters (*, ?, [) are not allowed here", s)
	}
	return s, ""
}

const digestPrefix = "sha256:"

// checkExe accepts an absolute executable path or "sha256:" followed by
// 64 lowercase hex digits.
func checkExe(s string) (string, string) {
	if strings.HasPrefix(s, digestPrefix) {
		if !isLowerHex(s[len(digestPrefix):], 64) {
			return s, fmt.Sprintf("%q is not sha256: followed by 64 lowercase hex digits", s)
		}
		return s, ""
	}
	if s != "" && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "~") {
		if m := basicString(s, MaxPathLength); m != "" {
			return s, m
		}
		return s, fmt.Sprintf("%q is neither an absolute executable path nor sha256:<64 lowercase hex>", s)
	}
	return checkPlainPath(s)
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkCIDR accepts an IPv4 or IPv6 prefix; its canonical form is the
// masked prefix ("203.0.113.7/24" becomes "203.0.113.0/24").
// checkIOC accepts an address or CIDR (canonicalised as checkCIDR does)
// or an executable digest ("sha256:<hex>").
func checkIOC(s string) (string, string) {
	if strings.HasPrefix(s, digestPrefix) {
		return checkExe(s)
	}
	return checkCIDR(s)
}

func checkCIDR(s string) (string, string) {
	if m := basicString(s, 64); m != "" {
		return s, m
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			return s, fmt.Sprintf("%q is an address, not a CIDR; write %s/%d", s, a, a.BitLen())
		}
		return s, fmt.Sprintf("%q is not a CIDR", s)
	}
	if p.Addr().Is4In6() {
		return s, fmt.Sprintf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 form", s)
	}
	return p.Masked().String(), ""
}

// checkEndpoint accepts "ip:port" with an IPv4 or IPv6 literal (IPv6 in
// brackets) and a port in 1-65535; its canonical form is
// netip.AddrPort.String.
func checkEndpoint(s string) (string, string) {
	if m := basicString(s, 64); m != "" {
		return s, m
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s, fmt.Sprintf("%q is not host:port (an IPv6 host goes in brackets: [fd00:ec2::254]:80)", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return s, fmt.Sprintf("%q: host %q is not an IP literal", s, host)
	}
	if a.Zone() != "" {
		return s, fmt.Sprintf("%q: IPv6 zones are not allowed", s)
	}
	if a.Is4In6() {
		return s, fmt.Sprintf("%q: IPv4-mapped IPv6 address; write the IPv4 form", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return s, fmt.Sprintf("%q: port %q is not in 1-65535", s, port)
	}
	return netip.AddrPortFrom(a, uint16(n)).String(), ""
}

// checkPolicyName accepts a DNS label: 1-63 of [a-z0-9-], starting and
// ending with a letter or digit.
func checkPolicyName(s string) string {
	if s == "" {
		return "name is empty"
	}
	if !isLabel(s, 63, "-") {
		return fmt.Sprintf("%q is not a DNS label (1-63 of a-z, 0-9, \"-\", starting and ending with a letter or digit)", s)
	}
	return ""
}

// checkRuleName accepts 1-128 of [A-Za-z0-9_.-], starting and ending with
// a letter or digit.
func checkRuleName(s string) string {
	if s == "" {
		return "rule name is empty"
	}
	if !isLabel(s, 128, "-_.ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		return fmt.Sprintf("%q is not a valid rule name (1-128 of A-Z, a-z, 0-9, \"-\", \"_\", \".\", starting and ending with a letter or digit)", s)
	}
	return ""
}

func isLabel(s string, maxLen int, extra string) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	alnum := func(c byte) bool {
		return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' && strings.IndexByte(extra, c) >= 0
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return alnum(s[0]) && alnum(s[len(s)-1])
}

func parseMode(s string) (palisadev1.Mode, bool) {
	switch s {
	case "enforce":
		return palisadev1.Mode_MODE_ENFORCE, true
	case "audit":
		return palisadev1.Mode_MODE_AUDIT, true
	}
	return palisadev1.Mode_MODE_UNSPECIFIED, false
}

// Known value sets, as functions so that nothing package-level is mutable.

func knownProvider(s string) bool {
	switch s {
	case "alibaba", "aws", "generic":
		return true
	}
	return false
}

func knownSeverity(s string) bool {
	switch s {
	case "info", "low", "medium", "high", "critical":
		return true
	}
	return false
}

func knownResponse(s string) bool {
	switch s {
	case "none", "kill", "kill_tree", "block":
		return true
	}
	return false
}

const (
	providerValues = "alibaba, aws, generic"
	severityValues = "info, low, medium, high, critical"
	responseValues = "none, kill, kill_tree, block"
)

// item is one string value with where it came from.
type item struct {
	s    string
	path string
	line int
}

// checkItems checks each item and returns the canonical values. canonical
// (bundles) reports values not already in canonical form. seen maps a
// canonical value to the path that first held it, so duplicates can be
// reported across lists; pass nil for a list of its own.
func (ps *problems) checkItems(items []item, check checker, canonical bool, seen map[string]item) []string {
	if seen == nil {
		seen = make(map[string]item, len(items))
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		c, msg := check(it.s)
		if msg != "" {
			ps.addf(it.path, it.line, "%s", msg)
			continue
		}
		if canonical && c != it.s {
			ps.addf(it.path, it.line, "%q is not in canonical form (want %q)", it.s, c)
			continue
		}
		if first, dup := seen[c]; dup {
			if first.s != it.s {
				ps.addf(it.path, it.line, "%q duplicates %s %q (both are %s)", it.s, first.path, first.s, c)
			} else {
				ps.addf(it.path, it.line, "%q duplicates %s", it.s, first.path)
			}
			continue
		}
		seen[c] = it
		out = append(out, c)
	}
	return out
}
