package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// startTolerance: /proc start times have USER_HZ (10 ms) resolution, the
// kernel's exec record has nanoseconds; both are converted with the same
// boot time, so the same process differs by less than one tick.
const startTolerance = 25 * time.Millisecond

// ErrNotInScope is returned when a kill would reach outside the scope.
var ErrNotInScope = errors.New("process is outside the enforcement scope")

// KillProcess SIGKILLs pid, and with tree its descendants, and returns how
// many processes it signalled. It is the engine's kill response and the
// daemon's KillProcessCommand handler.
//
// Pid reuse is guarded against: each target is opened as a pidfd first
// and then checked — the root against start (the process start time from
// the event or command; zero skips the check) and every target against
// the scope — and the signal goes through the pidfd, so a pid recycled
// after the check cannot be hit. A tree is collected, stopped (SIGSTOP, so
// nothing forks while we work) and then killed. The agent, pid 1 and
// processes outside Config.Scope are never signalled.
func (e *Engine) KillProcess(pid uint32, start time.Time, tree bool) (int, error) {
	root, err := e.openTarget(pid)
	if err != nil {
		return 0, err
	}
	if !start.IsZero() {
		st, err := readStat(e.cfg.ProcRoot, pid)
		if err != nil {
			unix.Close(root)
			return 0, fmt.Errorf("kill %d: %w", pid, err)
		}
		got := ticksToTime(e.cfg.BootTime, st.startTicks)
		if d := got.Sub(start); d > startTolerance || d < -startTolerance {
			unix.Close(root)
			return 0, fmt.Errorf("kill %d: pid reused (started %s, want %s)", pid, got.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
		}
	}
	targets := []int{root}
	defer func() {
		for _, fd := range targets {
			unix.Close(fd)
		}
	}()
	if tree {
		kids := children(e.cfg.ProcRoot)
		queue := kids[pid]
		seen := map[uint32]bool{pid: true}
		for len(queue) > 0 && len(targets) < 4096 {
			c := queue[0]
			queue = queue[1:]
			if seen[c] {
				continue
			}
			seen[c] = true
			fd, err := e.openTarget(c)
			if err != nil {
				continue // exited, or outside the scope
			}
			targets = append(targets, fd)
			queue = append(queue, kids[c]...)
		}
		for _, fd := range targets {
			_ = unix.PidfdSendSignal(fd, unix.SIGSTOP, nil, 0)
		}
	}
	n := 0
	var errs []error
	for _, fd := range targets {
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	if n == 0 && len(errs) == 0 {
		return 0, fmt.Errorf("kill %d: process exited", pid)
	}
	return n, errors.Join(errs...)
}

// openTarget opens a pidfd for pid after the safety checks.
func (e *Engine) openTarget(pid uint32) (int, error) {
	if pid <= 1 || int(pid) == os.Getpid() || (e.cfg.Agent.PID > 0 && int(pid) == e.cfg.Agent.PID) {
		return -1, fmt.Errorf("kill %d: refusing to kill pid 1 or the agent", pid)
	}
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, fmt.Errorf("kill %d: process exited", pid)
		}
		return -1, fmt.Errorf("kill %d: pidfd_open: %w", pid, err)
	}
	// From here on fd names this process even if pid is reused; the
	// scope check below reads /proc/PID, which is this process as long as
	// it lives (a kill would then fail with ESRCH).
	if err := e.inScope(pid); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st, err := readStat(e.cfg.ProcRoot, pid); err != nil || pid == 2 || st.ppid == 2 {
		unix.Close(fd)
		return -1, fmt.Errorf("kill %d: not a user process (or gone)", pid)
	}
	return fd, nil
}

func (e *Engine) inScope(pid uint32) error {
	if e.cfg.Scope == "" {
		return nil
	}
	rel, err := filepath.Rel(e.cfg.CgroupRoot, filepath.Clean(e.cfg.Scope))
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("kill %d: scope %s is not under %s", pid, e.cfg.Scope, e.cfg.CgroupRoot)
	}
	scope := "/" + strings.TrimPrefix(rel, ".")
	scope = filepath.Clean(scope)
	cg, err := cgroupPath(e.cfg.ProcRoot, pid)
	if err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	if scope != "/" && cg != scope && !strings.HasPrefix(cg, scope+"/") {
		return fmt.Errorf("kill %d (cgroup %s): %w", pid, cg, ErrNotInScope)
	}
	return nil
}
