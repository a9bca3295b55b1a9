package proccache_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/proccache"
)

func TestSeed_FindsSelf(t *testing.T) {
	c := proccache.New(proccache.Config{})
	defer c.Close()
	if err := c.Seed(); err != nil {
		t.Fatal(err)
	}
	p, ok := c.Get(uint32(os.Getpid()))
	if !ok {
		t.Fatal("own process not seeded")
	}
	exe, _ := os.Executable()
	if p.PPID != uint32(os.Getppid()) || p.ExePath != exe || !slices.Equal(p.Argv, os.Args) || p.ExeIno == 0 {
		t.Errorf("self = %+v", p)
	}
	if d := time.Since(p.StartTime); d < 0 || d > time.Hour {
		t.Errorf("start time %v is %v ago", p.StartTime, d)
	}
	if len(c.Ancestry(uint32(os.Getpid()), 4)) == 0 {
		t.Error("no ancestry for self")
	}
}

func TestDigest_CachedByDevInodeMtime(t *testing.T) {
	c := proccache.New(proccache.Config{})
	defer c.Close()
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(f)
	x1, err := c.Digest(f)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("one"))
	if x1.SHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("digest %s", x1.SHA256)
	}
	// Same inode and mtime: the cached digest is returned without reading.
	if err := os.WriteFile(f, []byte("two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if x, _ := c.Digest(f); x.SHA256 != x1.SHA256 {
		t.Error("digest not served from cache")
	}
	// New mtime: re-hashed.
	if err := os.Chtimes(f, time.Now(), st.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	two := sha256.Sum256([]byte("two"))
	if x, _ := c.Digest(f); x.SHA256 != hex.EncodeToString(two[:]) {
		t.Error("changed file not re-hashed")
	}
	if ids := c.ExesByDigest(hex.EncodeToString(two[:])); len(ids) != 1 || ids[0] != x1.ExeID {
		t.Errorf("ExesByDigest = %v", ids)
	}
	if x, ok := c.ExeByID(x1.ExeID); !ok || x.SHA256 != hex.EncodeToString(two[:]) {
		t.Errorf("ExeByID = %+v, %v", x, ok)
	}
}

func TestBounded_EvictsExitedFirst(t *testing.T) {
	c := proccache.New(proccache.Config{MaxProcs: 3})
	defer c.Close()
	for pid := uint32(1); pid <= 3; pid++ {
		c.Put(proccache.Process{PID: pid})
	}
	c.Exit(2)
	c.Put(proccache.Process{PID: 4})
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
	if _, ok := c.Get(2); ok {
		t.Error("exited process kept while a live one could be evicted instead")
	}
	c.Put(proccache.Process{PID: 5})
	if _, ok := c.Get(1); ok {
		t.Error("least recently used process kept")
	}
}

func TestCollector_ForgetsExited(t *testing.T) {
	c := proccache.New(proccache.Config{ExitGrace: 10 * time.Millisecond})
	defer c.Close()
	c.Put(proccache.Process{PID: 7, PPID: 1})
	c.Exit(7)
	if _, ok := c.Get(7); !ok {
		t.Fatal("exited process gone before the grace period")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := c.Get(7); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("collector never removed the exited process")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAncestry(t *testing.T) {
	c := proccache.New(proccache.Config{ProcRoot: t.TempDir()}) // nothing readable from "/proc"
	defer c.Close()
	c.Put(proccache.Process{PID: 10, PPID: 0, ExePath: "/sbin/init"})
	c.Put(proccache.Process{PID: 20, PPID: 10, ExePath: "/bin/sh"})
	c.Put(proccache.Process{PID: 30, PPID: 20, ExePath: "/bin/cat"})
	a := c.Ancestry(30, 8)
	if len(a) != 2 || a[0].PID != 20 || a[1].PID != 10 {
		t.Errorf("ancestry = %+v", a)
	}
	if a := c.Ancestry(30, 1); len(a) != 1 {
		t.Errorf("bounded ancestry = %+v", a)
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":              nil,
		"a\x00":         {"a"},
		"a\x00\x00":     {"a", ""},
		"a\x00b c\x00":  {"a", "b c"},
		"trunc\x00ated": {"trunc", "ated"},
	} {
		if got := proccache.SplitArgs([]byte(in)); !slices.Equal(got, want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", in, got, want)
		}
	}
}
