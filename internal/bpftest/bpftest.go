// Package bpftest is the one place that decides how privileged (eBPF)
// tests run, skip or fail, and that gives each test its own cgroup v2 child
// and bpffs pin directory.
//
// Every privileged test starts with RequireBPF(t). It skips when the test
// does not run as root or the kernel refuses BPF; with the environment
// variable PALISADE_REQUIRE_BPF=1 (CI) a would-be skip is a failure.
//
// Tests never attach to the root cgroup: NewCgroup creates
// /sys/fs/cgroup/unified/palisade-test-<random>, and (*Cgroup).Command
// starts workload processes directly inside it (clone3 CLONE_INTO_CGROUP),
// so nothing outside the test's own cgroup is ever in scope. Cleanup kills,
// by pid, only the processes left in that cgroup (which the test started)
// and removes the cgroup; pin directories are removed likewise.
package bpftest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/internal/kernfs"
)

const (
	// CgroupRoot is the cgroup v2 mount on our machines (hybrid layout).
	CgroupRoot = "/sys/fs/cgroup/unified"
	// BPFFS is where bpffs is mounted.
	BPFFS = "/sys/fs/bpf"
	// Prefix names every cgroup and pin directory a test creates.
	Prefix = "palisade-test-"
)

// RequireBPF skips the test unless it can load BPF programs (root, bpffs
// and tracefs mounted, ring buffers supported). With PALISADE_REQUIRE_BPF=1
// the skip becomes a fatal error.
func RequireBPF(t testing.TB) {
	t.Helper()
	if reason := bpfUnavailable(); reason != "" {
		if os.Getenv("PALISADE_REQUIRE_BPF") == "1" {
			t.Fatalf("BPF required (PALISADE_REQUIRE_BPF=1) but unavailable: %s", reason)
		}
		t.Skipf("BPF unavailable: %s", reason)
	}
}

func bpfUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if err := EnsureMounts(); err != nil {
		return err.Error()
	}
	if _, err := os.Stat(filepath.Join(CgroupRoot, "cgroup.procs")); err != nil {
		return "no cgroup v2 at " + CgroupRoot
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		return fmt.Sprintf("create ring buffer: %v", err)
	}
	m.Close()
	return ""
}

// EnsureMounts mounts bpffs at /sys/fs/bpf and tracefs at
// /sys/kernel/tracing when they are missing.
func EnsureMounts() error {
	if err := kernfs.EnsureMount(BPFFS, "bpf", unix.BPF_FS_MAGIC); err != nil {
		return err
	}
	return kernfs.EnsureMount(kernfs.Tracefs, "tracefs", unix.TRACEFS_MAGIC)
}

func randomName() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return Prefix + hex.EncodeToString(b[:])
}

// Cgroup is a cgroup v2 child created for one test.
type Cgroup struct {
	Path string
	fd   int
}

// NewCgroup creates /sys/fs/cgroup/unified/palisade-test-<random> and
// removes it when the test ends, after killing (by pid) the processes the
// test left in it.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	path := filepath.Join(CgroupRoot, randomName())
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(path)
		t.Fatalf("open cgroup: %v", err)
	}
	cg := &Cgroup{Path: path, fd: fd}
	t.Cleanup(func() {
		if err := cg.remove(); err != nil {
			t.Errorf("remove cgroup %s: %v", path, err)
		}
	})
	return cg
}

// FD is an open O_DIRECTORY descriptor of the cgroup, valid for the test.
func (c *Cgroup) FD() int { return c.fd }

// Command is exec.Command with the child started inside the cgroup.
func (c *Cgroup) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.fd}
	return cmd
}

// PIDs lists the processes currently in the cgroup.
func (c *Cgroup) PIDs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.Path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func (c *Cgroup) remove() error {
	defer unix.Close(c.fd)
	// Everything in this cgroup was started by the test (directly or as a
	// descendant); kill those pids only, then wait for the cgroup to empty.
	for attempt := 0; ; attempt++ {
		pids, err := c.PIDs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if attempt > 5000 {
			return fmt.Errorf("processes %v do not die", pids)
		}
		time.Sleep(time.Millisecond) // poll interval, not a synchronisation
	}
	for attempt := 0; ; attempt++ {
		err := unix.Rmdir(c.Path)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || attempt > 5000 {
			return err
		}
		time.Sleep(time.Millisecond) // zombies still being reaped
	}
}

// PinDir returns a fresh bpffs directory /sys/fs/bpf/palisade-test-<random>
// (not yet created, so a sensor can create it) that is removed with all its
// pins when the test ends.
func PinDir(t testing.TB) string {
	t.Helper()
	if err := EnsureMounts(); err != nil {
		t.Fatalf("mounts: %v", err)
	}
	dir := filepath.Join(BPFFS, randomName())
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove pin dir %s: %v", dir, err)
		}
	})
	return dir
}
