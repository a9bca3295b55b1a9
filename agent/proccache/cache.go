// Package proccache keeps what the agent knows about processes: pid, parent,
// credentials, cgroup, argv, start time and executable identity, seeded from
// /proc at start and updated from exec/exit events. It also hashes
// executables (sha256), caching each digest by (dev, inode, mtime), so a
// binary executed 20,000 times is read once.
//
// A Cache is bounded (Config.MaxProcs processes, Config.MaxExes executable
// digests; least recently used entries go first) and owns one collector
// goroutine, started by New and stopped by Close, which forgets processes
// some time after they exited (late events can still be enriched) and
// processes that vanished without an exit event (those outside the
// sensor's scope). There is no package-level mutable state.
//
// Device numbers in this package are user-space encoded (stat(2) st_dev).
package proccache

import (
	"container/list"
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/internal/kernfs"
)

// Process is one process as the cache knows it. Values are copies, except
// Argv, which is shared and must not be modified.
type Process struct {
	PID, PPID uint32
	UID, GID  uint32
	CgroupID  uint64
	Comm      string
	ExePath   string
	ExeSHA256 string // hex; empty until hashed or when hashing failed
	ExeDev    uint64 // user-space encoded st_dev
	ExeIno    uint64
	Argv      []string
	StartTime time.Time
	Exited    bool
	exitedAt  time.Time
	seenAt    time.Time
}

// ExeID identifies an executable file.
type ExeID struct {
	Dev uint64 // user-space encoded st_dev
	Ino uint64
}

// Exe is a hashed executable.
type Exe struct {
	ExeID
	Mtime  time.Time
	Path   string
	SHA256 string
}

// Config tunes a Cache. Zero values take the defaults.
type Config struct {
	// ProcRoot is the procfs mount (default /proc).
	ProcRoot string
	// CgroupRoot is the cgroup v2 mount used to turn /proc/PID/cgroup paths
	// into cgroup ids (default /sys/fs/cgroup/unified, then /sys/fs/cgroup).
	CgroupRoot string
	// MaxProcs bounds the process table (default 32768).
	MaxProcs int
	// MaxExes bounds the digest cache (default 4096).
	MaxExes int
	// MaxHashBytes: larger executables are not hashed (default 512 MiB).
	MaxHashBytes int64
	// ExitGrace is how long an exited process stays for late events
	// (default 30s); the collector runs every ExitGrace/2.
	ExitGrace time.Duration
	Logger    *slog.Logger
}

func (c *Config) defaults() {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = kernfs.CgroupRoot()
	}
	if c.MaxProcs <= 0 {
		c.MaxProcs = 32768
	}
	if c.MaxExes <= 0 {
		c.MaxExes = 4096
	}
	if c.MaxHashBytes <= 0 {
		c.MaxHashBytes = 512 << 20
	}
	if c.ExitGrace <= 0 {
		c.ExitGrace = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Cache is a bounded, concurrency-safe process table and digest cache.
type Cache struct {
	cfg      Config
	bootTime time.Time

	mu    sync.Mutex
	procs map[uint32]*list.Element // of *Process
	order *list.List               // front = most recently touched

	exes *exeCache

	cancel context.CancelFunc
	done   chan struct{}
}

// New creates a Cache and starts its collector goroutine; call Close to
// stop it. It does not read /proc: call Seed for that.
func New(cfg Config) *Cache {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		cfg:      cfg,
		bootTime: BootTime(),
		procs:    make(map[uint32]*list.Element),
		order:    list.New(),
		exes:     newExeCache(cfg.MaxExes, cfg.MaxHashBytes),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go c.collect(ctx)
	return c
}

// Close stops the collector goroutine.
func (c *Cache) Close() {
	c.cancel()
	<-c.done
}

// BootTimeValue is the wall-clock time of boot the cache converts kernel
// CLOCK_BOOTTIME stamps with.
func (c *Cache) BootTimeValue() time.Time { return c.bootTime }

// Put inserts or replaces a process (an exec replaces the image of the same
// pid). The previous entry's exe digest is not carried over.
func (c *Cache) Put(p Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.seenAt = time.Now()
	if el, ok := c.procs[p.PID]; ok {
		*el.Value.(*Process) = p
		c.order.MoveToFront(el)
		return
	}
	c.procs[p.PID] = c.order.PushFront(&p)
	for len(c.procs) > c.cfg.MaxProcs {
		c.evictLocked()
	}
}

// evictLocked drops the least recently touched process, preferring exited
// ones among the oldest few.
func (c *Cache) evictLocked() {
	victim := c.order.Back()
	for el, n := c.order.Back(), 0; el != nil && n < 64; el, n = el.Prev(), n+1 {
		if el.Value.(*Process).Exited {
			victim = el
			break
		}
	}
	if victim == nil {
		return
	}
	delete(c.procs, victim.Value.(*Process).PID)
	c.order.Remove(victim)
}

// Get returns a copy of the process with pid, if known.
func (c *Cache) Get(pid uint32) (Process, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.procs[pid]
	if !ok {
		return Process{}, false
	}
	return *el.Value.(*Process), true
}

// Lookup returns the process with pid, reading it from /proc when the cache
// does not know it yet (a process that existed before the agent started,
// or whose exec was outside the sensor's scope).
func (c *Cache) Lookup(pid uint32) (Process, bool) {
	if p, ok := c.Get(pid); ok {
		return p, true
	}
	p, err := c.readProc(pid)
	if err != nil {
		return Process{}, false
	}
	c.Put(p)
	return p, true
}

// Exit marks the process as exited; the collector removes it after
// Config.ExitGrace.
func (c *Cache) Exit(pid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.procs[pid]; ok {
		p := el.Value.(*Process)
		p.Exited = true
		p.exitedAt = time.Now()
	}
}

// SetDigest records the exe digest of a cached process.
func (c *Cache) SetDigest(pid uint32, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.procs[pid]; ok {
		el.Value.(*Process).ExeSHA256 = sum
	}
}

// Ancestry returns up to max ancestors of pid, nearest first, reading
// unknown ancestors from /proc.
func (c *Cache) Ancestry(pid uint32, max int) []Process {
	out := make([]Process, 0, min(max, 16))
	p, ok := c.Get(pid)
	if !ok {
		return nil
	}
	for len(out) < max && p.PPID != 0 && p.PPID != p.PID {
		parent, ok := c.Lookup(p.PPID)
		if !ok || slices.ContainsFunc(out, func(a Process) bool { return a.PID == parent.PID }) {
			break
		}
		out = append(out, parent)
		p = parent
	}
	return out
}

// Len is the number of cached processes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.procs)
}

// Snapshot returns a copy of every cached, not exited process.
func (c *Cache) Snapshot() []Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Process, 0, len(c.procs))
	for el := c.order.Front(); el != nil; el = el.Next() {
		if p := el.Value.(*Process); !p.Exited {
			out = append(out, *p)
		}
	}
	return out
}

func (c *Cache) collect(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.cfg.ExitGrace / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.sweep(now)
		}
	}
}

// sweep forgets processes exited more than ExitGrace ago, and processes
// not seen for ExitGrace that no longer exist in /proc.
func (c *Cache) sweep(now time.Time) {
	c.mu.Lock()
	var check []uint32
	for pid, el := range c.procs {
		p := el.Value.(*Process)
		switch {
		case p.Exited && now.Sub(p.exitedAt) > c.cfg.ExitGrace:
			delete(c.procs, pid)
			c.order.Remove(el)
		case !p.Exited && now.Sub(p.seenAt) > c.cfg.ExitGrace:
			check = append(check, pid)
		}
	}
	c.mu.Unlock()
	for _, pid := range check {
		_, err := os.Stat(c.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10))
		c.mu.Lock()
		if el, ok := c.procs[pid]; ok {
			p := el.Value.(*Process)
			if os.IsNotExist(err) {
				p.Exited, p.exitedAt = true, now
			} else {
				p.seenAt = now
			}
		}
		c.mu.Unlock()
	}
}
