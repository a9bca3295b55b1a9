package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/internal/fileutil"
)

// QuarantineFile, in the state dir, records a quarantine ordered by the
// controller, so it is re-applied after an agent restart or a reboot
// (which empties bpffs) until the controller releases the host.
const QuarantineFile = "quarantine.json"

// desiredQuarantine is the controller's last word on quarantine.
type desiredQuarantine struct {
	On     bool      `json:"on"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// actions carries out controller commands on this host (commands.Actions).
type actions struct {
	a  *Agent
	mu sync.Mutex
}

func (x *actions) loadDesired() (desiredQuarantine, error) {
	var d desiredQuarantine
	data, err := os.ReadFile(filepath.Join(x.a.cfg.StateDir, QuarantineFile))
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("read desired quarantine: %w", err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("desired quarantine file is corrupt: %w", err)
	}
	return d, nil
}

func (x *actions) saveDesired(d desiredQuarantine) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(filepath.Join(x.a.cfg.StateDir, QuarantineFile), data, 0o600)
}

// policyAllow is the quarantine allowlist of the policy in force (the
// sensor adds the controller's own endpoints).
func (x *actions) policyAllow() []netip.AddrPort {
	x.a.policy.mu.Lock()
	b := x.a.policy.bundle
	x.a.policy.mu.Unlock()
	var out []netip.AddrPort
	for _, s := range b.GetQuarantine().GetAllow() {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// reassert applies a controller-ordered quarantine after the policy was
// (re)applied; the policy alone may not quarantine.
func (x *actions) reassert() error {
	d, err := x.loadDesired()
	if err != nil || !d.On || x.a.sensor == nil {
		return err
	}
	x.a.log.Warn("re-applying quarantine ordered by the controller", "reason", d.Reason, "since", d.Since)
	return x.a.sensor.SetQuarantine(true, x.policyAllow())
}

func (x *actions) Quarantine(reason string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.a.sensor == nil {
		return errors.New("no kernel sensors on this host (no --cgroup scope): cannot quarantine")
	}
	// Desired state first: if the agent dies right after, a restart
	// still quarantines.
	if err := x.saveDesired(desiredQuarantine{On: true, Reason: reason, Since: time.Now().UTC()}); err != nil {
		return err
	}
	if err := x.a.sensor.SetQuarantine(true, x.policyAllow()); err != nil {
		return fmt.Errorf("set quarantine: %w", err)
	}
	x.a.log.Warn("host quarantined by the controller", "reason", reason)
	return nil
}

func (x *actions) Release(reason string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.a.sensor == nil {
		return errors.New("no kernel sensors on this host (no --cgroup scope)")
	}
	if err := x.saveDesired(desiredQuarantine{On: false, Reason: reason, Since: time.Now().UTC()}); err != nil {
		return err
	}
	x.a.policy.mu.Lock()
	byPolicy := x.a.policy.bundle.GetQuarantine().GetEnabled()
	x.a.policy.mu.Unlock()
	if byPolicy {
		return errors.New("released by the controller, but the policy in force itself enables quarantine")
	}
	if err := x.a.sensor.SetQuarantine(false, nil); err != nil {
		return fmt.Errorf("lift quarantine: %w", err)
	}
	x.a.log.Warn("host released by the controller", "reason", reason)
	return nil
}

// Kill ends a process of the scope. startTime (when set) must match the
// process's, so a reused pid is never hit; the signal goes through a
// pidfd, so the process checked is the process signalled.
func (x *actions) Kill(pid uint32, startTime time.Time, tree bool) error {
	if x.a.sensor == nil {
		return errors.New("no kernel sensors on this host (no --cgroup scope)")
	}
	pids := []uint32{pid}
	if tree {
		pids = append(pids, descendants(pid)...)
	}
	var errs []error
	for i, p := range pids {
		var want time.Time
		if i == 0 {
			want = startTime
		}
		if err := x.killOne(p, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (x *actions) killOne(pid uint32, startTime time.Time) error {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !inScope(pid, x.a.cfg.CgroupPath) {
		return fmt.Errorf("pid %d is outside this agent's scope %s", pid, x.a.cfg.CgroupPath)
	}
	if !startTime.IsZero() {
		p, err := x.a.sensor.Cache().Read(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		if d := p.StartTime.Sub(startTime); d > 50*time.Millisecond || d < -50*time.Millisecond {
			return fmt.Errorf("pid %d started at %s, not %s: another process has that pid now", pid, p.StartTime, startTime)
		}
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	return nil
}

// inScope reports whether pid's cgroup v2 path is the scope or below it.
func inScope(pid uint32, scope string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	root := cgroupMount(scope)
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(filepath.Clean(scope), root), "/")
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path == rel || strings.HasPrefix(path, strings.TrimSuffix(rel, "/")+"/")
		}
	}
	return false
}

// cgroupMount finds the cgroup2 mount point that holds scope.
func cgroupMount(scope string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "/sys/fs/cgroup"
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				mp := fields[4]
				if strings.HasPrefix(scope, mp) && len(mp) > len(best) {
					best = mp
				}
			}
		}
	}
	if best == "" {
		return "/sys/fs/cgroup"
	}
	return best
}

// descendants lists pid's children, recursively.
func descendants(pid uint32) []uint32 {
	var out []uint32
	queue := []uint32{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(data)) {
				if c, err := strconv.ParseUint(f, 10, 32); err == nil {
					out = append(out, uint32(c))
					queue = append(queue, uint32(c))
				}
			}
		}
	}
	return out
}

// Block is not available as a command yet: deny CIDRs come from the policy
// (spec.network.deny), which the controller pushes to every host.
func (x *actions) Block(cidr string, _ time.Time) error {
	return fmt.Errorf("block %s: per-host block commands are not supported yet; add the address to the policy's network.deny", cidr)
}

// Hunt is wired to the leaked-key hunter when it is available.
func (x *actions) Hunt(keyID, keyIDSha256 string) (string, error) {
	return "", errors.New("credential hunting is not available in this agent build")
}
