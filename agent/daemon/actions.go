package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/agent/hunt"
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

// Kill ends a process (and with tree its descendants) of the scope,
// guarded against pid reuse by the start time (see rules.Engine.KillProcess).
func (x *actions) Kill(pid uint32, startTime time.Time, tree bool) error {
	if x.a.rules == nil {
		return errors.New("no kernel sensors on this host (no --cgroup scope)")
	}
	_, err := x.a.rules.KillProcess(pid, startTime, tree)
	return err
}

// Block denies a destination on this host until the policy changes it.
func (x *actions) Block(cidr string, _ time.Time) error {
	if x.a.sensor == nil {
		return errors.New("no kernel sensors on this host (no --cgroup scope)")
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		a, aerr := netip.ParseAddr(cidr)
		if aerr != nil {
			return fmt.Errorf("block %q: not an address or CIDR", cidr)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return x.a.blockPrefix(p)
}

// Hunt searches the host for a leaked key id (given as its hash) and
// reports every place found as alerts; the result summarises it.
func (x *actions) Hunt(k hunt.Key) (string, error) {
	if x.a.rules == nil {
		return "", errors.New("no kernel sensors on this host (no --cgroup scope)")
	}
	ks, err := hunt.NewKeySet([]hunt.Key{k})
	if err != nil {
		return "", err
	}
	var paths []string
	for _, f := range x.a.policy.current().GetProtectedFiles() {
		paths = append(paths, f.GetPaths()...)
	}
	res, err := x.a.runHunt(x.a.ctx, paths, ks)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d findings (%d files, %d processes scanned)", len(res.Findings), res.FilesScanned, res.ProcessesScanned), nil
}
