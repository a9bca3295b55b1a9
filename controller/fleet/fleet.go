// Package fleet builds the bundle every agent receives: the current
// policy with the controller's fleet-wide content merged in — IOCs
// (addresses and CIDRs denied, digests killed at exec, always enforced)
// and leaked key ids (by hash, for agents to hunt and watch for). A change
// of that content gives the bundle a new revision under the same policy
// version.
package fleet

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// emptySHA256 is the sha256 of an empty document: the source of the
// bundle of a fleet with no policy yet.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Bundle merges iocs and leaks into the current policy (nil: none yet).
// Expired IOCs and leaks no longer active are left out.
func Bundle(cur *palisadev1.PolicyVersion, iocs []*palisadev1.IOC, leaks []*palisadev1.LeakedCredential, now time.Time) *palisadev1.PolicyBundle {
	var b *palisadev1.PolicyBundle
	if cur != nil && cur.GetBundle() != nil {
		b = proto.CloneOf(cur.GetBundle())
	} else {
		b = &palisadev1.PolicyBundle{Name: "fleet", DefaultMode: palisadev1.Mode_MODE_AUDIT, SourceSha256: emptySHA256}
	}
	b.Iocs = nil
	b.LeakedKeys = nil
	for _, i := range iocs {
		if exp := i.GetExpiresAt(); exp != nil && !now.Before(exp.AsTime()) {
			continue
		}
		if v := iocValue(i); v != "" {
			b.Iocs = append(b.Iocs, v)
		}
	}
	sort.Strings(b.Iocs)
	b.Iocs = compact(b.Iocs)
	for _, l := range leaks {
		if l.GetStatus() == palisadev1.LeakStatus_LEAK_STATUS_REVOKED {
			continue
		}
		b.LeakedKeys = append(b.LeakedKeys, &palisadev1.LeakedKey{
			Sha256: l.GetKeyIdSha256(), Prefix: l.GetKeyIdPrefix(), Length: l.GetKeyIdLength(), Masked: l.GetKeyIdMasked(),
		})
	}
	sort.Slice(b.LeakedKeys, func(i, j int) bool { return b.LeakedKeys[i].GetSha256() < b.LeakedKeys[j].GetSha256() })
	b.Revision = revision(b)
	return b
}

// iocValue is an IOC as a bundle lists it: a CIDR or "sha256:<hex>".
func iocValue(i *palisadev1.IOC) string {
	switch i.GetType() {
	case palisadev1.IOCType_IOC_TYPE_IP:
		a, err := netip.ParseAddr(i.GetValue())
		if err != nil {
			return ""
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String()
	case palisadev1.IOCType_IOC_TYPE_CIDR:
		p, err := netip.ParsePrefix(i.GetValue())
		if err != nil {
			return ""
		}
		return p.Masked().String()
	case palisadev1.IOCType_IOC_TYPE_SHA256:
		return "sha256:" + i.GetValue()
	}
	return ""
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// revision fingerprints the merged content (0 when there is none).
func revision(b *palisadev1.PolicyBundle) uint64 {
	if len(b.Iocs) == 0 && len(b.LeakedKeys) == 0 {
		return 0
	}
	h := sha256.New()
	for _, v := range b.Iocs {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	for _, k := range b.LeakedKeys {
		h.Write([]byte(k.GetSha256()))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return binary.BigEndian.Uint64(sum[:8]) | 1
}

// Describe names a bundle's version and revision for logs.
func Describe(b *palisadev1.PolicyBundle) string {
	return fmt.Sprintf("v%d/%08x", b.GetVersion(), b.GetRevision()>>32)
}
