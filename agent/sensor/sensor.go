package sensor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/palisade-sec/palisade/agent/proccache"
	palisadebpf "github.com/palisade-sec/palisade/bpf"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// layoutVersion is stored in the pinned `meta` map; bump it when map
// layouts change incompatibly so an old pin set is refused, not misread.
const layoutVersion = 1

// Config configures Open.
type Config struct {
	// CgroupPath is the enforcement scope, a cgroup v2 directory. Cgroup
	// programs attach here; tracing programs only act on tasks inside it.
	CgroupPath string
	// PinDir holds the pinned maps, programs and links. Default:
	// /sys/fs/bpf/palisade/<scope name>, see DefaultPinDir.
	PinDir string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Cache enriches events. When nil, Open creates (and Close closes) one,
	// seeded from /proc; a Cache passed in is used as is (seed it first).
	Cache *proccache.Cache
	// EventBuffer is the capacity of the Events channel (default 4096).
	// When the consumer falls behind, the reader blocks and the kernel
	// counts ring-buffer drops.
	EventBuffer int
	// AncestryDepth bounds Process.ancestry (default 8).
	AncestryDepth int
	// AlwaysAllow is added to every quarantine allowlist: the controller's
	// API and NATS endpoints, so a quarantined host stays manageable.
	AlwaysAllow []netip.AddrPort
	// ResolveInterval is the backstop period of ApplyBundle's
	// re-resolution (default 30s); inotify triggers it sooner.
	ResolveInterval time.Duration
}

// DefaultPinDir is /sys/fs/bpf/palisade/<scope>, where scope is the cgroup
// path relative to the cgroup v2 mount with "/" turned into "_" ("root"
// for the mount itself).
func DefaultPinDir(cgroupPath string) string {
	rel := strings.Trim(strings.TrimPrefix(filepath.Clean(cgroupPath), defaultCgroupV2Mount), "/")
	if rel == "" || rel == "sys/fs/cgroup" {
		rel = "root"
	}
	return filepath.Join(defaultPinRoot, strings.ReplaceAll(rel, "/", "_"))
}

// Sensor is a loaded, attached and pinned set of Palisade programs for one
// cgroup scope.
type Sensor struct {
	cfg      Config
	log      *slog.Logger
	spec     *ebpf.CollectionSpec
	coll     *ebpf.Collection
	links    []link.Link
	features []*palisadev1.Feature
	adopted  bool

	cache    *proccache.Cache
	ownCache bool

	rd     *ringbuf.Reader
	events chan *palisadev1.Event
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once

	seq          atomic.Uint64
	decoded      atomic.Uint64
	decodeErrors atomic.Uint64

	applyMu sync.Mutex
	policy  atomic.Pointer[Resolved]
	// slots[i] maps each outer map to a hash of the content its slot i
	// holds, when known (guarded by applyMu).
	slots [2]map[string]string
	// denyDigests: exec.deny sha256 entries of the current bundle, for the
	// user-space fallback kill.
	denyDigests atomic.Pointer[map[string]palisadev1.Mode]

	watch *watcher
}

// attachment describes how one program is attached.
type attachment struct {
	prog    string
	feature string
	// one of:
	tracing    bool
	tpGroup    string
	tpName     string
	cgroupType ebpf.AttachType
}

var attachments = []attachment{
	{prog: "handle_exec", feature: FeatTpBTF, tracing: true},
	{prog: "handle_exit", feature: FeatSchedTP, tpGroup: "sched", tpName: "sched_process_exit"},
	{prog: "exit_openat", feature: FeatSyscallTP, tpGroup: "syscalls", tpName: "sys_exit_openat"},
	{prog: "exit_openat2", feature: FeatSyscallTP, tpGroup: "syscalls", tpName: "sys_exit_openat2"},
	{prog: "exit_open", feature: FeatSyscallTP, tpGroup: "syscalls", tpName: "sys_exit_open"},
	{prog: "exit_creat", feature: FeatSyscallTP, tpGroup: "syscalls", tpName: "sys_exit_creat"},
	{prog: "connect4", feature: FeatCgroupSockAddr, cgroupType: ebpf.AttachCGroupInet4Connect},
	{prog: "connect6", feature: FeatCgroupSockAddr, cgroupType: ebpf.AttachCGroupInet6Connect},
	{prog: "sendmsg4", feature: FeatCgroupSockAddr, cgroupType: ebpf.AttachCGroupUDP4Sendmsg},
	{prog: "sendmsg6", feature: FeatCgroupSockAddr, cgroupType: ebpf.AttachCGroupUDP6Sendmsg},
	{prog: "skb_egress", feature: FeatCgroupSKB, cgroupType: ebpf.AttachCGroupInetEgress},
	{prog: "skb_ingress", feature: FeatCgroupSKB, cgroupType: ebpf.AttachCGroupInetIngress},
}

// Open probes the kernel, loads the programs (reusing maps pinned in
// PinDir by an earlier sensor, so enforcement state such as quarantine
// carries over), attaches them to the scope (adopting pinned links rather
// than duplicating them), pins everything, and starts the event reader,
// which stops on Close or when ctx is done. A mechanism the kernel lacks
// is reported in Features and skipped; Open fails only when nothing
// useful can run (no ring buffer, no scope, unusable pins).
func Open(ctx context.Context, cfg Config) (*Sensor, error) {
	if cfg.CgroupPath == "" {
		return nil, errors.New("open sensor: no cgroup scope configured")
	}
	if cfg.PinDir == "" {
		cfg.PinDir = DefaultPinDir(cfg.CgroupPath)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 4096
	}
	if cfg.AncestryDepth <= 0 {
		cfg.AncestryDepth = 8
	}
	if cfg.ResolveInterval <= 0 {
		cfg.ResolveInterval = 30 * time.Second
	}
	s := &Sensor{cfg: cfg, log: cfg.Logger.With("component", "sensor", "scope", cfg.CgroupPath)}
	if err := s.open(ctx); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
}

func (s *Sensor) open(ctx context.Context) error {
	if err := ensureMounts(); err != nil {
		return fmt.Errorf("open sensor: %w", err)
	}
	s.features = Probe()
	if !available(s.features, FeatRingbuf) {
		return errors.New("open sensor: kernel has no BPF ring buffer")
	}

	var cgStat syscall.Stat_t
	if err := syscall.Stat(s.cfg.CgroupPath, &cgStat); err != nil {
		return fmt.Errorf("open sensor: scope cgroup: %w", err)
	}
	scopeID := cgStat.Ino

	spec, err := palisadebpf.LoadPalisade()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	s.spec = spec
	for _, a := range attachments {
		if !available(s.features, a.feature) {
			delete(spec.Programs, a.prog)
		}
	}
	if !available(s.features, FeatTaskUnderCgroup) {
		// Without the scope filter, global programs would act outside the
		// scope: never load them.
		for _, a := range attachments {
			if a.cgroupType == 0 {
				delete(spec.Programs, a.prog)
			}
		}
	}

	if err := os.MkdirAll(s.cfg.PinDir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(s.cfg.PinDir, "meta"))
	s.adopted = statErr == nil

	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: s.cfg.PinDir},
	})
	if err != nil {
		return fmt.Errorf("load bpf collection (pins in %s; run cleanup if they are from an incompatible version): %w", s.cfg.PinDir, err)
	}
	s.coll = coll

	if err := s.claimScope(scopeID); err != nil {
		return err
	}
	cg, err := os.Open(s.cfg.CgroupPath)
	if err != nil {
		return fmt.Errorf("open scope cgroup: %w", err)
	}
	err = coll.Maps["scope"].Put(uint32(0), uint32(cg.Fd()))
	cg.Close()
	if err != nil {
		return fmt.Errorf("set scope cgroup: %w", err)
	}

	if s.cfg.Cache == nil {
		s.cache = proccache.New(proccache.Config{Logger: s.cfg.Logger})
		s.ownCache = true
		if err := s.cache.Seed(); err != nil {
			s.log.Warn("seed process cache", "err", err)
		}
	} else {
		s.cache = s.cfg.Cache
	}
	if err := s.seedPidExe(); err != nil {
		s.log.Warn("seed pid->exe map", "err", err)
	}

	for _, a := range attachments {
		prog := coll.Programs[a.prog]
		if prog == nil {
			continue
		}
		if a.tpGroup == "syscalls" && tracepointExists(a.tpGroup, a.tpName) != nil {
			// Not every architecture has every syscall (arm64 has no open
			// or creat): nothing to watch there.
			s.log.Debug("syscall tracepoint absent", "tracepoint", a.tpName)
			continue
		}
		if err := s.attach(a, prog); err != nil {
			s.log.Warn("attach failed, sensor degraded", "program", a.prog, "err", err)
			s.features = append(s.features, feature("attach:"+a.prog, err))
			continue
		}
		if err := repin(prog, filepath.Join(s.cfg.PinDir, "prog_"+a.prog)); err != nil {
			s.log.Warn("pin program", "program", a.prog, "err", err)
		}
	}

	rd, err := ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	s.rd = rd
	s.events = make(chan *palisadev1.Event, s.cfg.EventBuffer)
	s.stop = make(chan struct{})
	s.wg.Add(2)
	go s.readLoop()
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.rd.Close()
		case <-s.stop:
		}
	}()
	s.log.Info("sensor open", "pin_dir", s.cfg.PinDir, "adopted", s.adopted)
	return nil
}

// claimScope records the scope in the pinned meta map, refusing pins that
// belong to another scope or map layout.
func (s *Sensor) claimScope(scopeID uint64) error {
	m := s.coll.Maps["meta"]
	var cur [24]byte
	if err := m.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read meta: %w", err)
	}
	le := binary.LittleEndian
	if id := le.Uint64(cur[0:]); id != 0 && id != scopeID {
		return fmt.Errorf("pin dir %s belongs to another cgroup scope (id %d, ours %d)", s.cfg.PinDir, id, scopeID)
	}
	if v := le.Uint64(cur[8:]); v != 0 && v != layoutVersion {
		return fmt.Errorf("pin dir %s has map layout %d, want %d: run cleanup", s.cfg.PinDir, v, layoutVersion)
	}
	le.PutUint64(cur[0:], scopeID)
	le.PutUint64(cur[8:], layoutVersion)
	// The agent itself is exempt from kill-on-exec and kill-on-open (it
	// plants honeytokens and may exec helpers).
	le.PutUint32(cur[16:], uint32(os.Getpid()))
	if err := m.Put(uint32(0), cur); err != nil {
		return fmt.Errorf("write meta: %w", err)
	}
	return nil
}

// attach attaches prog, adopting a link pinned by an earlier sensor: a
// cgroup link is updated in place (no moment without enforcement, no
// duplicate); a tracing link is replaced (new attached first, then the old
// one detached, so at worst an event is reported twice).
func (s *Sensor) attach(a attachment, prog *ebpf.Program) error {
	pin := filepath.Join(s.cfg.PinDir, "link_"+a.prog)
	var old link.Link
	if _, err := os.Stat(pin); err == nil {
		old, err = link.LoadPinnedLink(pin, nil)
		if err != nil {
			s.log.Warn("pinned link unusable, replacing", "pin", pin, "err", err)
			_ = os.Remove(pin)
			old = nil
		}
	}
	if old != nil && a.cgroupType != 0 {
		if err := old.Update(prog); err == nil {
			s.links = append(s.links, old)
			return nil
		} else {
			s.log.Warn("update pinned link failed, re-attaching", "pin", pin, "err", err)
		}
	}

	var l link.Link
	var err error
	switch {
	case a.tracing:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	case a.tpGroup != "":
		l, err = link.Tracepoint(a.tpGroup, a.tpName, prog, nil)
	default:
		l, err = link.AttachCgroup(link.CgroupOptions{Path: s.cfg.CgroupPath, Attach: a.cgroupType, Program: prog})
	}
	if err != nil {
		if old != nil {
			old.Close()
		}
		return fmt.Errorf("attach %s: %w", a.prog, err)
	}
	if old != nil {
		_ = old.Unpin()
		_ = old.Close()
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("pin link %s: %w", a.prog, err)
	}
	s.links = append(s.links, l)
	return nil
}

func repin(p *ebpf.Program, path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return p.Pin(path)
}

// seedPidExe fills pid_exe for processes already inside the scope, which
// no exec event announced.
func (s *Sensor) seedPidExe() error {
	m := s.coll.Maps["pid_exe"]
	return filepath.WalkDir(s.cfg.CgroupPath, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			var st syscall.Stat_t
			if syscall.Stat("/proc/"+f+"/exe", &st) != nil {
				continue
			}
			var pid uint32
			if _, err := fmt.Sscan(f, &pid); err != nil {
				continue
			}
			_ = m.Update(pid, encodeFileID(FileID{Dev: st.Dev, Ino: st.Ino}), ebpf.UpdateNoExist)
		}
		return nil
	})
}

// Features returns what Probe found plus attach failures ("attach:PROG").
func (s *Sensor) Features() []*palisadev1.Feature { return s.features }

// Adopted reports whether Open found and reused pins of an earlier sensor.
func (s *Sensor) Adopted() bool { return s.adopted }

// PinDir is where this sensor's objects are pinned.
func (s *Sensor) PinDir() string { return s.cfg.PinDir }

// Cache is the process cache used for enrichment.
func (s *Sensor) Cache() *proccache.Cache { return s.cache }

// Events delivers decoded events; it is closed when the sensor stops.
func (s *Sensor) Events() <-chan *palisadev1.Event { return s.events }

// Close stops the reader and releases this process's handles. Pins stay:
// attached programs and the applied policy (quarantine included) remain in
// force until Cleanup(pinDir).
func (s *Sensor) Close() error {
	s.closeAll()
	return nil
}

func (s *Sensor) closeAll() {
	s.closed.Do(func() {
		s.applyMu.Lock()
		w := s.watch
		s.applyMu.Unlock()
		if w != nil {
			w.close()
		}
		if s.stop != nil {
			close(s.stop)
		}
		if s.rd != nil {
			s.rd.Close()
		}
		s.wg.Wait()
		for _, l := range s.links {
			l.Close()
		}
		if s.coll != nil {
			s.coll.Close()
		}
		if s.ownCache && s.cache != nil {
			s.cache.Close()
		}
	})
}

// Cleanup detaches and removes everything pinned in pinDir (the undo of
// Open; `palisade-agent cleanup`). Removing the link pins detaches the
// programs once no process holds them.
func Cleanup(pinDir string) error {
	ents, err := os.ReadDir(pinDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleanup %s: %w", pinDir, err)
	}
	var errs []error
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(pinDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinDir); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup %s: %w", pinDir, err)
	}
	return nil
}

// Stats are the in-kernel counters, summed over CPUs.
type Stats struct {
	RingbufDrops   uint64
	SKBEgressDrop  uint64
	SKBIngressDrop uint64
	ConnectDenied  uint64
	Kills          uint64
	Decoded        uint64 // user space: records decoded
	DecodeErrors   uint64 // user space: records that failed to decode
}

// Stats reads the counters.
func (s *Sensor) Stats() (Stats, error) {
	var st Stats
	m := s.coll.Maps["stats"]
	get := func(i uint32) (uint64, error) {
		var per []uint64
		if err := m.Lookup(i, &per); err != nil {
			return 0, fmt.Errorf("read stat %d: %w", i, err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n, nil
	}
	var err error
	for i, dst := range []*uint64{&st.RingbufDrops, &st.SKBEgressDrop, &st.SKBIngressDrop, &st.ConnectDenied, &st.Kills} {
		if *dst, err = get(uint32(i)); err != nil {
			return st, err
		}
	}
	st.Decoded = s.decoded.Load()
	st.DecodeErrors = s.decodeErrors.Load()
	return st, nil
}

// Drops is the number of events the kernel could not put in the ring
// buffer (per-CPU counter, summed).
func (s *Sensor) Drops() uint64 {
	st, err := s.Stats()
	if err != nil {
		s.log.Warn("read drop counter", "err", err)
	}
	return st.RingbufDrops
}
