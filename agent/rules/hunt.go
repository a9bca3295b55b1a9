package rules

import (
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/hunt"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// LeakedKeyRule is the rule whose mode and response apply to processes a
// hunt finds holding a leaked key.
const LeakedKeyRule = "leaked-key-in-process"

// HuntAlerts turns a hunt's process findings into alerts, one per
// process, under the active leaked-key rule (LeakedKeyRule): its
// severity, its mode and, in enforce mode, its response (kill or
// kill_tree, guarded by the process start time the hunt read). Without
// that rule in the active set the alerts are critical and audit-only.
// File findings are not alerts: they are the blast radius, reported with
// the Result itself.
func (e *Engine) HuntAlerts(res *hunt.Result) []*palisadev1.Alert {
	rule := &palisadev1.Rule{Name: LeakedKeyRule, Severity: "critical", Mode: palisadev1.Mode_MODE_AUDIT,
		Description: "A running process holds a reported leaked access key id."}
	for _, r := range e.Rules() {
		if r.GetName() == LeakedKeyRule {
			rule = r
		}
	}
	var out []*palisadev1.Alert
	byPID := map[uint32][]hunt.Finding{}
	for _, f := range res.Findings {
		if f.PID != 0 {
			byPID[f.PID] = append(byPID[f.PID], f)
		}
	}
	for _, f := range res.Processes() {
		p := &palisadev1.Process{Pid: f.PID, Uid: f.UID, ExePath: f.Exe}
		if !f.StartTime.IsZero() {
			p.StartTime = timestamppb.New(f.StartTime)
		}
		ev := &palisadev1.Event{HostId: res.HostID, Time: timestamppb.New(res.Finished), Process: p}
		mode := rule.GetMode()
		if mode == palisadev1.Mode_MODE_UNSPECIFIED {
			mode = palisadev1.Mode_MODE_ENFORCE
		}
		resp := rule.GetResponse()
		if resp == "none" {
			resp = ""
		}
		al := &palisadev1.Alert{
			Id: newID(), HostId: res.HostID, Time: timestamppb.New(e.now()), Rule: rule.GetName(),
			Severity: rule.GetSeverity(), Description: rule.GetDescription(), Mode: mode, Event: ev, Response: resp,
			Labels: map[string]string{"source": "hunt", "process": f.Exe + "(" + strconv.FormatUint(uint64(f.PID), 10) + ")"},
		}
		if al.HostId == "" {
			al.HostId = e.cfg.HostID
		}
		var sums []string
		for i, x := range byPID[f.PID] {
			k := "leaked_key"
			if i > 0 {
				k += "_" + strconv.Itoa(i+1)
			}
			where := x.Where + " " + x.Name
			al.Labels[k] = x.Key + " in " + where
			sums = append(sums, x.KeySHA256)
		}
		slices.Sort(sums)
		al.Labels["key_sha256"] = strings.Join(slices.Compact(sums), ",")
		e.respond(al)
		out = append(out, al)
	}
	return out
}
