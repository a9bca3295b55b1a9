package sensor

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// FileID identifies a file or executable by device (user-space st_dev
// encoding, as stat(2) reports it) and inode.
type FileID struct {
	Dev uint64
	Ino uint64
}

// Resolved is a policy turned into kernel identities: what Apply writes to
// the maps. Build it with Resolve, or by hand in tests. Modes are
// MODE_AUDIT or MODE_ENFORCE (MODE_UNSPECIFIED counts as enforce).
type Resolved struct {
	Version uint64

	// DenyExec: executables killed at exec (enforce) or reported (audit).
	DenyExec []ExecRule
	// Files: protected credential files with their allowed readers.
	Files []FileRule
	// DenyCIDRs: destinations refused to connect/sendmsg.
	DenyCIDRs []CIDRRule
	// Metadata endpoints (port 0 = any port) reachable only by
	// MetadataClients.
	Metadata        []netip.AddrPort
	MetadataClients []FileID
	MetadataMode    palisadev1.Mode
	// Quarantine: while true, connect/sendmsg and packets of established
	// flows are refused except to/from QuarantineAllow (port 0 = any port).
	Quarantine      bool
	QuarantineAllow []netip.AddrPort

	// Unresolved lists policy entries that named nothing on this host when
	// resolved (informational: not errors).
	Unresolved []string

	execMode palisadev1.Mode // exec.deny's mode, for digests resolved later
}

// ExecRule denies one executable.
type ExecRule struct {
	ID     FileID
	Path   string // resolved path, for events; may be empty
	Source string // the policy entry it came from
	Mode   palisadev1.Mode
}

// FileRule protects one file (inode).
type FileRule struct {
	ID         FileID
	Path       string
	Rule       string // policy element, e.g. "protected_files[0]"
	Readers    []FileID
	Mode       palisadev1.Mode
	Honeytoken bool
}

// CIDRRule denies one prefix.
type CIDRRule struct {
	Prefix netip.Prefix
	Mode   palisadev1.Mode
}

// Map capacities; must match bpf/palisade.bpf.c.
const (
	maxDenyExe  = 4096
	maxProt     = 4096
	maxReaders  = 16384
	maxDenyCIDR = 16384
	maxMeta     = 64
	maxMetaCli  = 1024
	maxQAllow   = 256
)

func modeByte(m palisadev1.Mode) uint8 {
	if m == palisadev1.Mode_MODE_AUDIT {
		return 1
	}
	return 2
}

func encodeFileID(id FileID) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], id.Ino)
	binary.LittleEndian.PutUint32(b[8:], userDevToK(id.Dev))
	return b
}

func encodeEP4(ap netip.AddrPort) []byte {
	b := make([]byte, 8)
	a := ap.Addr().As4()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[4:], ap.Port())
	return b
}

func encodeEP6(ap netip.AddrPort) []byte {
	b := make([]byte, 20)
	a := ap.Addr().As16()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[16:], ap.Port())
	return b
}

// kernelPolicy is the content of every policy map for one slot.
type kernelPolicy map[string]map[string][]byte // outer map name -> key -> value

func (k kernelPolicy) put(outer string, key, val []byte) {
	if k[outer] == nil {
		k[outer] = map[string][]byte{}
	}
	k[outer][string(key)] = val
}

// policyMaps are the double-buffered outer maps.
var policyMaps = []string{
	"o_deny_exe", "o_prot", "o_readers", "o_deny4", "o_deny6",
	"o_meta4", "o_meta6", "o_meta_cli", "o_qallow4", "o_qallow6", "o_settings",
}

// quarantineMaps change with SetQuarantine; the rest are carried over.
var quarantineMaps = []string{"o_qallow4", "o_qallow6", "o_settings"}

// compile turns r into map contents, checking capacities.
func (r *Resolved) compile(generation uint64) (kernelPolicy, error) {
	k := kernelPolicy{}
	var errs []error
	limit := func(what string, n, max int) {
		if n > max {
			errs = append(errs, fmt.Errorf("%s: %d entries exceed the kernel map's %d", what, n, max))
		}
	}
	for _, d := range r.DenyExec {
		k.put("o_deny_exe", encodeFileID(d.ID), []byte{modeByte(d.Mode)})
	}
	// Reader sets: identical reader lists share one set id.
	sets := map[string]uint32{}
	for _, f := range r.Files {
		readers := slices.Clone(f.Readers)
		slices.SortFunc(readers, func(a, b FileID) int {
			if a.Dev != b.Dev {
				return compareU64(a.Dev, b.Dev)
			}
			return compareU64(a.Ino, b.Ino)
		})
		readers = slices.Compact(readers)
		var sb strings.Builder
		for _, rd := range readers {
			fmt.Fprintf(&sb, "%d:%d,", rd.Dev, rd.Ino)
		}
		set, ok := sets[sb.String()]
		if !ok {
			set = uint32(len(sets) + 1)
			sets[sb.String()] = set
			for _, rd := range readers {
				key := make([]byte, 16)
				binary.LittleEndian.PutUint64(key[0:], rd.Ino)
				binary.LittleEndian.PutUint32(key[8:], userDevToK(rd.Dev))
				binary.LittleEndian.PutUint32(key[12:], set)
				k.put("o_readers", key, []byte{1})
			}
		}
		val := make([]byte, 8)
		binary.LittleEndian.PutUint32(val[0:], set)
		val[4] = modeByte(f.Mode)
		if f.Honeytoken {
			val[5] = 1
		}
		key := encodeFileID(f.ID)
		if prev, ok := k["o_prot"][string(key)]; ok && prev[4] == 2 {
			val[4] = 2 // the same inode under two rules: enforce wins
		}
		k.put("o_prot", key, val)
	}
	for _, c := range r.DenyCIDRs {
		p := c.Prefix.Masked()
		if p.Addr().Is4() {
			key := make([]byte, 8)
			binary.LittleEndian.PutUint32(key, uint32(p.Bits()))
			a := p.Addr().As4()
			copy(key[4:], a[:])
			k.put("o_deny4", key, []byte{modeByte(c.Mode)})
		} else {
			key := make([]byte, 20)
			binary.LittleEndian.PutUint32(key, uint32(p.Bits()))
			a := p.Addr().As16()
			copy(key[4:], a[:])
			k.put("o_deny6", key, []byte{modeByte(c.Mode)})
		}
	}
	for _, ep := range r.Metadata {
		ep = unmapAP(ep)
		if ep.Addr().Is4() {
			k.put("o_meta4", encodeEP4(ep), []byte{modeByte(r.MetadataMode)})
		} else {
			k.put("o_meta6", encodeEP6(ep), []byte{modeByte(r.MetadataMode)})
		}
	}
	for _, c := range r.MetadataClients {
		k.put("o_meta_cli", encodeFileID(c), []byte{1})
	}
	k.quarantine(r.Quarantine, r.QuarantineAllow, modeByte(r.MetadataMode), generation)

	limit("exec.deny", len(k["o_deny_exe"]), maxDenyExe)
	limit("protected files", len(k["o_prot"]), maxProt)
	limit("readers", len(k["o_readers"]), maxReaders)
	limit("network.deny (v4)", len(k["o_deny4"]), maxDenyCIDR)
	limit("network.deny (v6)", len(k["o_deny6"]), maxDenyCIDR)
	limit("metadata endpoints (v4)", len(k["o_meta4"]), maxMeta)
	limit("metadata endpoints (v6)", len(k["o_meta6"]), maxMeta)
	limit("metadata clients", len(k["o_meta_cli"]), maxMetaCli)
	limit("quarantine allow (v4)", len(k["o_qallow4"]), maxQAllow)
	limit("quarantine allow (v6)", len(k["o_qallow6"]), maxQAllow)
	return k, errors.Join(errs...)
}

func (k kernelPolicy) quarantine(on bool, allow []netip.AddrPort, metaMode uint8, generation uint64) {
	for _, ep := range allow {
		ep = unmapAP(ep)
		if ep.Addr().Is4() {
			k.put("o_qallow4", encodeEP4(ep), []byte{1})
		} else {
			k.put("o_qallow6", encodeEP6(ep), []byte{1})
		}
	}
	st := make([]byte, 16)
	if on {
		st[0] = 1
	}
	st[4] = metaMode
	binary.LittleEndian.PutUint64(st[8:], generation)
	k.put("o_settings", []byte{0, 0, 0, 0}, st)
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Apply switches the kernel from the policy in force to r in one step.
// It builds fresh inner maps for the inactive slot, fills them completely,
// installs them, and only then flips the active-slot index, so a program
// sees either the old or the new policy, never a mix. On error nothing
// visible changes and the previous policy stays in force.
func (s *Sensor) Apply(r *Resolved) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	gen, err := s.generation()
	if err != nil {
		return fmt.Errorf("apply policy: %w", err)
	}
	withAlways := *r
	withAlways.QuarantineAllow = append(slices.Clone(r.QuarantineAllow), s.cfg.AlwaysAllow...)
	k, err := withAlways.compile(gen + 1)
	if err != nil {
		return fmt.Errorf("apply policy: %w", err)
	}
	if err := s.install(k, policyMaps); err != nil {
		return fmt.Errorf("apply policy: %w", err)
	}
	s.policy.Store(r)
	s.log.Info("policy applied", "version", r.Version, "generation", gen+1,
		"deny_exec", len(r.DenyExec), "files", len(r.Files), "deny_cidrs", len(r.DenyCIDRs),
		"metadata", len(r.Metadata), "quarantine", r.Quarantine)
	return nil
}

// SetQuarantine turns quarantine on or off with the given allowlist,
// keeping every other part of the policy in force (also one atomic flip).
// It works on a sensor that adopted pins without knowing the policy that
// was applied before, e.g. after an agent restart.
func (s *Sensor) SetQuarantine(on bool, allow []netip.AddrPort) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	gen, err := s.generation()
	if err != nil {
		return fmt.Errorf("set quarantine: %w", err)
	}
	metaMode := uint8(2)
	if cur := s.policy.Load(); cur != nil {
		metaMode = modeByte(cur.MetadataMode)
	} else if st, err := s.settings(); err == nil && st != nil && st[4] != 0 {
		metaMode = st[4]
	}
	k := kernelPolicy{}
	k.quarantine(on, append(slices.Clone(allow), s.cfg.AlwaysAllow...), metaMode, gen+1)
	if len(k["o_qallow4"]) > maxQAllow || len(k["o_qallow6"]) > maxQAllow {
		return fmt.Errorf("set quarantine: allowlist exceeds %d entries", maxQAllow)
	}
	if err := s.install(k, quarantineMaps); err != nil {
		return fmt.Errorf("set quarantine: %w", err)
	}
	if cur := s.policy.Load(); cur != nil {
		next := *cur
		next.Quarantine, next.QuarantineAllow = on, slices.Clone(allow)
		s.policy.Store(&next)
	}
	s.log.Info("quarantine set", "on", on, "allow", len(allow), "generation", gen+1)
	return nil
}

// Quarantined reports whether the active policy has quarantine on.
func (s *Sensor) Quarantined() (bool, error) {
	st, err := s.settings()
	if err != nil {
		return false, err
	}
	return st != nil && st[0] == 1, nil
}

// Policy is the last policy applied through this Sensor (nil after an
// adoption until the first Apply).
func (s *Sensor) Policy() *Resolved { return s.policy.Load() }

func (s *Sensor) activeSlot() (uint32, error) {
	var slot uint32
	if err := s.coll.Maps["state"].Lookup(uint32(0), &slot); err != nil {
		return 0, fmt.Errorf("read active slot: %w", err)
	}
	return slot & 1, nil
}

// settings returns the active slot's settings value, nil if none yet.
func (s *Sensor) settings() ([]byte, error) {
	slot, err := s.activeSlot()
	if err != nil {
		return nil, err
	}
	var inner *ebpf.Map
	if err := s.coll.Maps["o_settings"].Lookup(slot, &inner); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read settings slot: %w", err)
	}
	defer inner.Close()
	st := make([]byte, 16)
	if err := inner.Lookup(uint32(0), &st); err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	return st, nil
}

func (s *Sensor) generation() (uint64, error) {
	st, err := s.settings()
	if err != nil || st == nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(st[8:]), nil
}

// install writes k into fresh inner maps for the inactive slot — for the
// outer maps in `replace`; every other policy map gets the active slot's
// inner map — and then flips the active slot.
//
// Every update of a map-in-map waits for an RCU grace period in the
// kernel, so install skips slots that already hold the wanted content
// (tracked in s.slots; unknown after a restart, when everything is
// rewritten).
func (s *Sensor) install(k kernelPolicy, replace []string) error {
	active, err := s.activeSlot()
	if err != nil {
		return err
	}
	next := active ^ 1
	if s.slots[0] == nil {
		s.slots = [2]map[string]string{{}, {}}
	}
	want := map[string]string{}
	var maps []*ebpf.Map
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	put := map[string]*ebpf.Map{}
	for _, name := range policyMaps {
		if !slices.Contains(replace, name) {
			cur, known := s.slots[active][name]
			if known && s.slots[next][name] == cur {
				want[name] = cur
				continue
			}
			var m *ebpf.Map
			err := s.coll.Maps[name].Lookup(active, &m)
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				m, err = s.newInner(name, nil)
				cur, known = contentHash(nil), true
			}
			if err != nil {
				return fmt.Errorf("carry over %s: %w", name, err)
			}
			maps = append(maps, m)
			put[name] = m
			if known {
				want[name] = cur
			}
			continue
		}
		h := contentHash(k[name])
		want[name] = h
		if s.slots[next][name] == h {
			continue
		}
		m, err := s.newInner(name, k[name])
		if err != nil {
			return err
		}
		maps = append(maps, m)
		put[name] = m
	}
	// All inner maps are complete: install them in the inactive slot...
	for _, name := range policyMaps {
		m, ok := put[name]
		if !ok {
			continue
		}
		delete(s.slots[next], name)
		if err := s.coll.Maps[name].Put(next, m); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	// ...and switch programs over in one store.
	if err := s.coll.Maps["state"].Put(uint32(0), next); err != nil {
		return fmt.Errorf("flip active slot: %w", err)
	}
	s.slots[next] = want
	return nil
}

func contentHash(content map[string][]byte) string {
	keys := make([]string, 0, len(content))
	for k := range content {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%x=%x;", k, content[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Sensor) newInner(name string, content map[string][]byte) (*ebpf.Map, error) {
	spec := s.spec.Maps[name].InnerMap.Copy()
	spec.Name = strings.TrimPrefix(name, "o_")
	spec.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create %s inner map: %w", name, err)
	}
	for key, val := range content {
		if err := m.Put([]byte(key), val); err != nil {
			m.Close()
			return nil, fmt.Errorf("fill %s: %w", name, err)
		}
	}
	return m, nil
}
