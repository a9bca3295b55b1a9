package proccache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type exeKey struct {
	dev, ino uint64
	mtime    int64
}

// exeCache is an LRU of executable digests keyed by (dev, inode, mtime).
type exeCache struct {
	max      int
	maxBytes int64

	mu    sync.Mutex
	m     map[exeKey]*list.Element // of *Exe
	byID  map[ExeID]exeKey         // latest mtime seen per (dev, inode)
	order *list.List
}

func newExeCache(max int, maxBytes int64) *exeCache {
	return &exeCache{max: max, maxBytes: maxBytes, m: map[exeKey]*list.Element{}, byID: map[ExeID]exeKey{}, order: list.New()}
}

func (e *exeCache) get(k exeKey) (Exe, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	el, ok := e.m[k]
	if !ok {
		return Exe{}, false
	}
	e.order.MoveToFront(el)
	return *el.Value.(*Exe), true
}

func (e *exeCache) put(k exeKey, x Exe) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if el, ok := e.m[k]; ok {
		*el.Value.(*Exe) = x
		e.order.MoveToFront(el)
	} else {
		e.m[k] = e.order.PushFront(&x)
	}
	e.byID[x.ExeID] = k
	for len(e.m) > e.max {
		back := e.order.Back()
		old := back.Value.(*Exe)
		ok := exeKey{old.Dev, old.Ino, old.Mtime.UnixNano()}
		delete(e.m, ok)
		if e.byID[old.ExeID] == ok {
			delete(e.byID, old.ExeID)
		}
		e.order.Remove(back)
	}
}

// Digest returns the sha256 of the executable at path (symlinks followed),
// from the cache when (dev, inode, mtime) is unchanged.
func (c *Cache) Digest(path string) (Exe, error) {
	return c.digest(path, path)
}

// DigestPID hashes the executable of a running process through
// /proc/PID/exe, which works even when the file was deleted or replaced.
func (c *Cache) DigestPID(pid uint32) (Exe, error) {
	exeLink := filepath.Join(c.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10), "exe")
	name, err := c.ExePathOf(pid)
	if err != nil {
		return Exe{}, err
	}
	return c.digest(exeLink, name)
}

func (c *Cache) digest(open, name string) (Exe, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(open, &st); err != nil {
		return Exe{}, fmt.Errorf("stat %s: %w", name, err)
	}
	k := exeKey{st.Dev, st.Ino, st.Mtim.Nano()}
	if x, ok := c.exes.get(k); ok {
		return x, nil
	}
	f, err := os.Open(open)
	if err != nil {
		return Exe{}, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	// Re-stat the opened file so the key matches what is hashed.
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return Exe{}, fmt.Errorf("fstat %s: %w", name, err)
	}
	k = exeKey{st.Dev, st.Ino, st.Mtim.Nano()}
	x := Exe{ExeID: ExeID{Dev: st.Dev, Ino: st.Ino}, Mtime: time.Unix(0, k.mtime), Path: name}
	if st.Size > c.exes.maxBytes {
		return x, fmt.Errorf("hash %s: %d bytes exceeds limit", name, st.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return x, fmt.Errorf("hash %s: %w", name, err)
	}
	x.SHA256 = hex.EncodeToString(h.Sum(nil))
	c.exes.put(k, x)
	return x, nil
}

// ExeByID returns the most recently hashed executable with (dev, inode).
func (c *Cache) ExeByID(id ExeID) (Exe, bool) {
	c.exes.mu.Lock()
	k, ok := c.exes.byID[id]
	c.exes.mu.Unlock()
	if !ok {
		return Exe{}, false
	}
	return c.exes.get(k)
}

// ExesByDigest returns the identities of known executables whose sha256 is
// sum (lower-case hex). "Known" means: hashed before (executed while the
// agent ran, or named by path in a policy), or the image of a process
// running now — this call hashes those first. An executable that has
// neither run nor been named is not found: a digest cannot be turned into
// an inode without reading every file on the host.
func (c *Cache) ExesByDigest(sum string) []ExeID {
	for _, p := range c.Snapshot() {
		if p.ExeSHA256 != "" || p.ExePath == "" { // hashed, or a kernel thread
			continue
		}
		if x, err := c.DigestPID(p.PID); err == nil {
			c.SetDigest(p.PID, x.SHA256)
		}
	}
	c.exes.mu.Lock()
	defer c.exes.mu.Unlock()
	seen := map[ExeID]bool{}
	var out []ExeID
	for _, el := range c.exes.m {
		x := el.Value.(*Exe)
		if x.SHA256 == sum && !seen[x.ExeID] {
			seen[x.ExeID] = true
			out = append(out, x.ExeID)
		}
	}
	return out
}
