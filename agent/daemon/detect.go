package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/honeytoken"
	"github.com/palisade-sec/palisade/agent/hunt"
	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/internal/fileutil"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// BlocksFile, in the state dir, keeps addresses blocked by rule responses
// and block commands, so they stay blocked across restarts.
const BlocksFile = "blocks.json"

// LeakedKeyFileRule names the alerts of leaked keys found in files.
const LeakedKeyFileRule = "leaked-key-in-file"

// startDetection creates the rules engine and the honeytoken planter; it
// runs after the sensor opened.
func (a *Agent) startDetection() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	eng, err := rules.NewEngine(rules.Config{
		HostID: a.HostID(), Logger: a.log, Scope: a.cfg.CgroupPath,
		BootTime: a.sensor.Cache().BootTimeValue(), Block: a.blockPrefix,
		Agent: rules.AgentInfo{PID: os.Getpid(), Exe: exe, Paths: []string{a.cfg.StateDir, a.sensor.PinDir(), exe}},
	})
	if err != nil {
		return fmt.Errorf("rules engine: %w", err)
	}
	a.rules = eng
	a.planter = &honeytoken.Planter{StateDir: a.cfg.StateDir, Logger: a.log}
	if err := a.loadBlocks(); err != nil {
		a.log.Error("ignoring recorded blocks", "err", err)
	}
	return nil
}

// applyBundle puts a bundle in force: decoy files first (so the sensor
// resolves them), then the kernel maps, then the rules, the IOCs and the
// leaked keys. The caller holds policyMu.
func (a *Agent) applyBundle(b *palisadev1.PolicyBundle) error {
	if a.sensor == nil {
		return a.policy.applied(b)
	}
	if res, err := a.planter.Sync(b.GetHoneytokens()); err != nil {
		a.log.Error("honeytokens not planted", "err", err)
	} else if len(res.Problems) > 0 {
		a.log.Warn("some honeytokens refused", "problems", res.Problems)
	}
	if err := a.sensor.ApplyBundle(a.withBlocks(b)); err != nil {
		return fmt.Errorf("apply policy %q v%d: %w", b.GetName(), b.GetVersion(), err)
	}
	defaults, err := rules.DefaultRules(b.GetDefaultMode())
	if err != nil {
		return fmt.Errorf("default rules: %w", err)
	}
	if err := a.rules.Apply(rules.Merge(defaults, b.GetRules())); err != nil {
		// The kernel part is in force; the previous rule set stays.
		a.log.Error("rules refused; the previous rule set stays in force", "err", err)
	}
	var iocs []string
	for _, s := range b.GetIocs() {
		if _, err := netip.ParsePrefix(s); err == nil {
			iocs = append(iocs, s)
		}
	}
	if err := a.rules.SetIOCs(iocs); err != nil {
		a.log.Error("iocs refused", "err", err)
	}
	prev := a.policy.current()
	if err := a.policy.applied(b); err != nil {
		a.log.Error("policy applied but not kept on disk", "err", err)
	}
	a.updateLeakedKeys(prev, b)
	return a.acts.reassert()
}

// updateLeakedKeys arms the leaked-key rule with the bundle's keys and
// hunts for keys that are new since the previous bundle.
func (a *Agent) updateLeakedKeys(prev, b *palisadev1.PolicyBundle) {
	var all, fresh []hunt.Key
	for _, k := range b.GetLeakedKeys() {
		key := hunt.Key{SHA256: k.GetSha256(), Prefix: k.GetPrefix(), Length: int(k.GetLength()), Masked: k.GetMasked()}
		all = append(all, key)
		if !slices.ContainsFunc(prev.GetLeakedKeys(), func(p *palisadev1.LeakedKey) bool { return p.GetSha256() == k.GetSha256() }) {
			fresh = append(fresh, key)
		}
	}
	ks, err := hunt.NewKeySet(all)
	if err != nil {
		a.log.Error("leaked keys refused", "err", err)
		return
	}
	a.rules.SetLeakedKeys(ks)
	if len(fresh) == 0 {
		return
	}
	freshSet, err := hunt.NewKeySet(fresh)
	if err != nil {
		return
	}
	var paths []string
	for _, f := range b.GetProtectedFiles() {
		paths = append(paths, f.GetPaths()...)
	}
	a.goRun(func() { a.runHunt(a.ctx, paths, freshSet) })
}

// runHunt searches the host for keys and reports every place found as an
// alert: processes under the leaked-key rule (and its response), files as
// the blast radius.
func (a *Agent) runHunt(ctx context.Context, paths []string, ks *hunt.KeySet) (*hunt.Result, error) {
	res, err := hunt.Hunt(ctx, hunt.Config{HostID: a.HostID(), Paths: paths, Scope: a.cfg.CgroupPath, Logger: a.log}, ks)
	if err != nil {
		a.log.Error("hunt failed", "err", err)
		return nil, err
	}
	alerts := a.rules.HuntAlerts(res)
	for _, f := range res.Findings {
		if f.Where != "file" {
			continue
		}
		alerts = append(alerts, &palisadev1.Alert{
			Time: timestamppb.Now(), Rule: LeakedKeyFileRule, Severity: "high",
			Description: "a leaked access key id is stored in a file on this host",
			Mode:        palisadev1.Mode_MODE_AUDIT,
			Labels:      map[string]string{"key": f.Key, "key_sha256": f.KeySHA256, "path": f.Path, "line": strconv.Itoa(f.Line), "where": "file"},
		})
	}
	a.log.Warn("leaked-key hunt finished", "keys", res.Keys, "findings", len(res.Findings),
		"files_scanned", res.FilesScanned, "processes_scanned", res.ProcessesScanned)
	a.emitAlerts(alerts)
	return res, nil
}

// runDetection evaluates every event against the rules, in order, then
// passes it on to telemetry.
func (a *Agent) runDetection(ctx context.Context, in <-chan *palisadev1.Event, out chan<- *palisadev1.Event) {
	defer close(out)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-in:
			if !ok {
				return
			}
			if alerts := a.rules.Evaluate(ev); len(alerts) > 0 {
				a.emitAlerts(alerts)
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// emitAlerts logs alerts and, with a controller, spools them.
func (a *Agent) emitAlerts(alerts []*palisadev1.Alert) {
	for _, al := range alerts {
		a.log.Warn("alert", "rule", al.GetRule(), "severity", al.GetSeverity(), "mode", al.GetMode().String(),
			"pid", al.GetEvent().GetProcess().GetPid(), "exe", al.GetEvent().GetProcess().GetExePath(),
			"response", al.GetResponse(), "response_taken", al.GetResponseTaken(), "response_error", al.GetResponseError())
	}
	if a.spool == nil {
		return
	}
	if err := a.fwd.AppendAlerts(a.HostID(), alerts); err != nil {
		a.log.Error("alerts not spooled", "count", len(alerts), "err", err)
	}
}

// blockPrefix adds a destination to the host's deny list and re-applies
// the policy in force with it.
func (a *Agent) blockPrefix(p netip.Prefix) error {
	a.policyMu.Lock()
	defer a.policyMu.Unlock()
	s := p.Masked().String()
	if slices.Contains(a.blocks, s) {
		return nil
	}
	a.blocks = append(a.blocks, s)
	if err := a.saveBlocks(); err != nil {
		a.log.Error("block not recorded on disk", "err", err)
	}
	b := a.policy.current()
	if b == nil {
		b = emptyBundle()
	}
	if err := a.sensor.ApplyBundle(a.withBlocks(b)); err != nil {
		a.blocks = slices.DeleteFunc(a.blocks, func(x string) bool { return x == s })
		return fmt.Errorf("block %s: %w", s, err)
	}
	a.log.Warn("destination blocked on this host", "cidr", s)
	return nil
}

// withBlocks returns b with the host's blocks added to its deny list.
func (a *Agent) withBlocks(b *palisadev1.PolicyBundle) *palisadev1.PolicyBundle {
	if len(a.blocks) == 0 {
		return b
	}
	out := proto.CloneOf(b)
	if out.Network == nil {
		out.Network = &palisadev1.NetworkPolicy{Mode: palisadev1.Mode_MODE_ENFORCE}
	}
	for _, s := range a.blocks {
		if !slices.Contains(out.Network.Deny, s) {
			out.Network.Deny = append(out.Network.Deny, s)
		}
	}
	return out
}

func (a *Agent) loadBlocks() error {
	data, err := os.ReadFile(filepath.Join(a.cfg.StateDir, BlocksFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var blocks []string
	if err := json.Unmarshal(data, &blocks); err != nil {
		return fmt.Errorf("blocks file is corrupt: %w", err)
	}
	for _, s := range blocks {
		if _, err := netip.ParsePrefix(s); err == nil {
			a.blocks = append(a.blocks, s)
		}
	}
	return nil
}

func (a *Agent) saveBlocks() error {
	data, err := json.Marshal(a.blocks)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(filepath.Join(a.cfg.StateDir, BlocksFile), data, 0o600)
}

// emptyBundle is the policy of a host that has none: nothing denied,
// audit by default.
func emptyBundle() *palisadev1.PolicyBundle {
	return &palisadev1.PolicyBundle{Name: "none", DefaultMode: palisadev1.Mode_MODE_AUDIT,
		SourceSha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", CreatedAt: timestamppb.New(time.Unix(0, 0))}
}
