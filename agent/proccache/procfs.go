package proccache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the clock-tick rate of /proc/PID/stat times (USER_HZ, 100 on
// every Linux architecture we run on).
const userHZ = 100

// BootTime returns the wall-clock time of boot, such that a CLOCK_BOOTTIME
// reading b corresponds to BootTime().Add(b).
func BootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// Seed reads every process in /proc into the cache. Processes that vanish
// while being read are skipped.
func (c *Cache) Seed() error {
	ents, err := os.ReadDir(c.cfg.ProcRoot)
	if err != nil {
		return fmt.Errorf("seed process cache: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if p, err := c.readProc(uint32(pid)); err == nil {
			c.Put(p)
		}
	}
	return nil
}

// readProc reads one process from /proc. The executable is not hashed.
func (c *Cache) readProc(pid uint32) (Process, error) {
	dir := filepath.Join(c.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10))
	p := Process{PID: pid}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return p, err
	}
	if err := parseStat(stat, &p, c.bootTime); err != nil {
		return p, err
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		parseStatus(status, &p)
	}
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Argv = SplitArgs(cmdline)
	}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.ExePath = strings.TrimSuffix(exe, " (deleted)")
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "exe"), &st); err == nil {
			p.ExeDev, p.ExeIno = st.Dev, st.Ino
		}
	}
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		p.CgroupID = c.cgroupID(cg)
	}
	return p, nil
}

// ExePathOf returns /proc/PID/exe's target, if the process still exists.
func (c *Cache) ExePathOf(pid uint32) (string, error) {
	exe, err := os.Readlink(filepath.Join(c.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10), "exe"))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(exe, " (deleted)"), nil
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid ... starttime".
func parseStat(b []byte, p *Process, boot time.Time) error {
	open := bytes.IndexByte(b, '(')
	close := bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return fmt.Errorf("malformed stat")
	}
	p.Comm = string(b[open+1 : close])
	f := strings.Fields(string(b[close+1:]))
	// f[0] is state (field 3); ppid is field 4, starttime field 22.
	if len(f) < 20 {
		return fmt.Errorf("short stat")
	}
	ppid, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return fmt.Errorf("stat ppid: %w", err)
	}
	p.PPID = uint32(ppid)
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return fmt.Errorf("stat starttime: %w", err)
	}
	p.StartTime = boot.Add(time.Duration(ticks) * time.Second / userHZ)
	return nil
}

func parseStatus(b []byte, p *Process) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		switch k {
		case "Uid":
			p.UID = uint32(n)
		case "Gid":
			p.GID = uint32(n)
		}
	}
}

// cgroupID turns the "0::/path" line of /proc/PID/cgroup into the cgroup v2
// id (the inode number of the cgroup directory).
func (c *Cache) cgroupID(b []byte) uint64 {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(c.cfg.CgroupRoot, rest), &st) == nil {
				return st.Ino
			}
		}
	}
	return 0
}

// SplitArgs splits a NUL-separated argument block (as in /proc/PID/cmdline
// or the kernel's arg area) into arguments. Each argument is
// NUL-terminated; the last terminator may be missing when the block was
// truncated.
func SplitArgs(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}
