package sensor

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/palisade-sec/palisade/agent/proccache"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// InvalidPolicyError lists every problem found in a bundle, each prefixed
// with the path of the offending field (e.g. "network.deny[1]: not a
// CIDR"). Nothing of an invalid bundle is applied.
type InvalidPolicyError struct {
	Problems []string
}

func (e *InvalidPolicyError) Error() string {
	return fmt.Sprintf("invalid policy (%d problems): %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// DefaultMetadataEndpoints are guarded when a bundle has a metadata policy
// without endpoints: Alibaba Cloud's and AWS's instance-metadata services
// (v4 and AWS's v6), any port.
var DefaultMetadataEndpoints = []netip.AddrPort{
	netip.MustParseAddrPort("100.100.100.200:0"),
	netip.MustParseAddrPort("169.254.169.254:0"),
	netip.MustParseAddrPort("[fd00:ec2::254]:0"),
}

// HomeRoots are where "~/" in a protected path expands: root's home and
// every directory under /home.
var homePrefixes = []string{"/root/", "/home/*/"}

// Resolve validates bundle and turns it into kernel identities:
//   - protected paths and honeytokens: globs ("/home/*/.ssh/id_*", "~/"
//     meaning /root and /home/*) expanded now, each match stat'ed following
//     symlinks to (dev, inode); hard links and symlinks to a protected file
//     are thus protected too. Paths that match nothing are not errors (the
//     file may appear later: see ApplyBundle's re-resolution).
//   - readers, metadata clients and exec.deny: an absolute executable path
//     (stat'ed) or "sha256:<64 hex>", matched against executables the cache
//     knows (running now or hashed before). Limit: a digest names no file,
//     so an executable that neither runs nor ran since the agent started is
//     not found; its entry is listed in Resolved.Unresolved.
//   - CIDRs (a bare address means /32 or /128) and "host:port" endpoints
//     (port 0: any port); a metadata policy without endpoints guards
//     DefaultMetadataEndpoints.
//
// Every problem is reported at once in an *InvalidPolicyError.
func Resolve(b *palisadev1.PolicyBundle, cache *proccache.Cache) (*Resolved, error) {
	rs := &resolver{cache: cache, r: &Resolved{Version: b.GetVersion()}}
	rs.bundle(b)
	if len(rs.problems) > 0 {
		return nil, &InvalidPolicyError{Problems: rs.problems}
	}
	return rs.r, nil
}

type resolver struct {
	cache    *proccache.Cache
	r        *Resolved
	problems []string
}

func (rs *resolver) problem(path, format string, args ...any) {
	rs.problems = append(rs.problems, path+": "+fmt.Sprintf(format, args...))
}

func (rs *resolver) note(format string, args ...any) {
	rs.r.Unresolved = append(rs.r.Unresolved, fmt.Sprintf(format, args...))
}

func (rs *resolver) mode(path string, m, def palisadev1.Mode) palisadev1.Mode {
	switch m {
	case palisadev1.Mode_MODE_UNSPECIFIED:
		return def
	case palisadev1.Mode_MODE_AUDIT, palisadev1.Mode_MODE_ENFORCE:
		return m
	}
	rs.problem(path, "unknown mode %d", m)
	return def
}

func (rs *resolver) bundle(b *palisadev1.PolicyBundle) {
	def := rs.mode("default_mode", b.GetDefaultMode(), palisadev1.Mode_MODE_ENFORCE)
	for i, pf := range b.GetProtectedFiles() {
		base := fmt.Sprintf("protected_files[%d]", i)
		mode := rs.mode(base+".mode", pf.GetMode(), def)
		var readers []FileID
		for j, rd := range pf.GetReaders() {
			readers = append(readers, rs.exe(fmt.Sprintf("%s.readers[%d]", base, j), rd)...)
		}
		if len(pf.GetPaths()) == 0 {
			rs.problem(base+".paths", "empty")
		}
		for j, p := range pf.GetPaths() {
			for _, m := range rs.files(fmt.Sprintf("%s.paths[%d]", base, j), p) {
				rs.r.Files = append(rs.r.Files, FileRule{ID: m.id, Path: m.path, Rule: base, Readers: readers, Mode: mode})
			}
		}
	}
	for i, h := range b.GetHoneytokens() {
		base := fmt.Sprintf("honeytokens[%d]", i)
		for _, m := range rs.files(base+".path", h.GetPath()) {
			rs.r.Files = append(rs.r.Files, FileRule{ID: m.id, Path: m.path, Rule: base, Mode: def, Honeytoken: true})
		}
	}
	if md := b.GetMetadata(); md != nil {
		rs.r.MetadataMode = rs.mode("metadata.mode", md.GetMode(), def)
		for i, ep := range md.GetEndpoints() {
			if ap, ok := rs.endpoint(fmt.Sprintf("metadata.endpoints[%d]", i), ep); ok {
				rs.r.Metadata = append(rs.r.Metadata, ap)
			}
		}
		if len(md.GetEndpoints()) == 0 {
			rs.r.Metadata = append(rs.r.Metadata, DefaultMetadataEndpoints...)
		}
		for i, c := range md.GetClients() {
			rs.r.MetadataClients = append(rs.r.MetadataClients, rs.exe(fmt.Sprintf("metadata.clients[%d]", i), c)...)
		}
	}
	rs.r.execMode = def
	if ex := b.GetExec(); ex != nil {
		mode := rs.mode("exec.mode", ex.GetMode(), def)
		rs.r.execMode = mode
		for i, d := range ex.GetDeny() {
			path := fmt.Sprintf("exec.deny[%d]", i)
			ids := rs.exe(path, d)
			for _, id := range ids {
				rule := ExecRule{ID: id, Source: d, Mode: mode}
				if !strings.HasPrefix(d, "sha256:") {
					rule.Path = d
				}
				rs.r.DenyExec = append(rs.r.DenyExec, rule)
			}
		}
	}
	if nw := b.GetNetwork(); nw != nil {
		mode := rs.mode("network.mode", nw.GetMode(), def)
		for i, c := range nw.GetDeny() {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				a, aerr := netip.ParseAddr(c)
				if aerr != nil {
					rs.problem(fmt.Sprintf("network.deny[%d]", i), "not a CIDR: %q", c)
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			rs.r.DenyCIDRs = append(rs.r.DenyCIDRs, CIDRRule{Prefix: p.Masked(), Mode: mode})
		}
	}
	// Fleet IOCs merged in by the controller are always enforced,
	// whatever the modes of the policy's own lists.
	for i, ioc := range b.GetIocs() {
		path := fmt.Sprintf("iocs[%d]", i)
		if strings.HasPrefix(ioc, "sha256:") {
			for _, id := range rs.exe(path, ioc) {
				rs.r.DenyExec = append(rs.r.DenyExec, ExecRule{ID: id, Source: ioc, Mode: palisadev1.Mode_MODE_ENFORCE})
			}
			continue
		}
		p, err := netip.ParsePrefix(ioc)
		if err != nil {
			rs.problem(path, "not a CIDR or sha256 digest: %q", ioc)
			continue
		}
		rs.r.DenyCIDRs = append(rs.r.DenyCIDRs, CIDRRule{Prefix: p.Masked(), Mode: palisadev1.Mode_MODE_ENFORCE})
	}
	if q := b.GetQuarantine(); q != nil {
		rs.r.Quarantine = q.GetEnabled()
		for i, ep := range q.GetAllow() {
			if ap, ok := rs.endpoint(fmt.Sprintf("quarantine.allow[%d]", i), ep); ok {
				rs.r.QuarantineAllow = append(rs.r.QuarantineAllow, ap)
			}
		}
	}
}

func (rs *resolver) endpoint(path, s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		rs.problem(path, "not an address:port endpoint: %q", s)
		return ap, false
	}
	return unmapAP(ap), true
}

// exe resolves an executable reference (absolute path or sha256:HEX).
func (rs *resolver) exe(path, ref string) []FileID {
	if sum, ok := strings.CutPrefix(ref, "sha256:"); ok {
		sum = strings.ToLower(sum)
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
			rs.problem(path, "not a sha256 digest (64 hex digits): %q", ref)
			return nil
		}
		if rs.cache == nil {
			rs.note("%s: %s: no process cache to match digests", path, ref)
			return nil
		}
		var out []FileID
		for _, id := range rs.cache.ExesByDigest(sum) {
			out = append(out, FileID(id))
		}
		if len(out) == 0 {
			rs.note("%s: no known executable has digest %s", path, sum)
		}
		return out
	}
	if !filepath.IsAbs(ref) {
		rs.problem(path, "executable must be an absolute path or sha256:<hex>: %q", ref)
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(ref, &st); err != nil {
		rs.note("%s: %s: %v", path, ref, err)
		return nil
	}
	if rs.cache != nil {
		// Remember it, so events for it carry a digest even after the file
		// is deleted.
		_, _ = rs.cache.Digest(ref)
	}
	return []FileID{{Dev: st.Dev, Ino: st.Ino}}
}

type fileMatch struct {
	id   FileID
	path string
}

// expandHome turns "~/x" into "/root/x" and "/home/*/x".
func expandHome(p string) []string {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		return []string{p}
	}
	var out []string
	for _, h := range homePrefixes {
		out = append(out, h+rest)
	}
	return out
}

// files expands a protected path glob to the regular files it matches now.
func (rs *resolver) files(path, pattern string) []fileMatch {
	if pattern == "" {
		rs.problem(path, "empty path")
		return nil
	}
	if !filepath.IsAbs(pattern) && !strings.HasPrefix(pattern, "~/") {
		rs.problem(path, "path must be absolute or start with ~/: %q", pattern)
		return nil
	}
	if _, err := filepath.Match(pattern, ""); err != nil {
		rs.problem(path, "bad glob %q: %v", pattern, err)
		return nil
	}
	var out []fileMatch
	for _, pat := range expandHome(pattern) {
		matches, _ := filepath.Glob(pat)
		slices.Sort(matches)
		for _, m := range matches {
			st, err := os.Stat(m) // follows symlinks: protect the target inode
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			sys := st.Sys().(*syscall.Stat_t)
			out = append(out, fileMatch{id: FileID{Dev: sys.Dev, Ino: sys.Ino}, path: m})
		}
	}
	if len(out) == 0 {
		rs.note("%s: %s matches no file yet", path, pattern)
	}
	return out
}

// watchDirs lists the existing directories whose changes can change what
// the bundle resolves to: every directory level of each protected-path
// glob (so /home/*/.aws/credentials watches /home, /home/alice and
// /home/alice/.aws), and the directories of executable paths (a package
// upgrade replaces a binary's inode).
func watchDirs(b *palisadev1.PolicyBundle) []string {
	set := map[string]bool{}
	addGlob := func(pattern string) {
		for _, pat := range expandHome(pattern) {
			if !filepath.IsAbs(pat) {
				continue
			}
			parts := strings.Split(filepath.Clean(pat), "/")
			for i := 2; i < len(parts); i++ {
				prefix := strings.Join(parts[:i], "/")
				dirs, _ := filepath.Glob(prefix)
				for _, d := range dirs {
					if st, err := os.Stat(d); err == nil && st.IsDir() {
						set[d] = true
					}
				}
			}
		}
	}
	addExe := func(ref string) {
		if filepath.IsAbs(ref) {
			set[filepath.Dir(ref)] = true
		}
	}
	for _, pf := range b.GetProtectedFiles() {
		for _, p := range pf.GetPaths() {
			addGlob(p)
		}
		for _, r := range pf.GetReaders() {
			addExe(r)
		}
	}
	for _, h := range b.GetHoneytokens() {
		addGlob(h.GetPath())
	}
	for _, c := range b.GetMetadata().GetClients() {
		addExe(c)
	}
	for _, d := range b.GetExec().GetDeny() {
		addExe(d)
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}
