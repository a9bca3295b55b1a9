// Package respond is the leader's automatic response. Each alert an agent
// raises joins an incident — the open incident of its host and rule if one
// was updated within the response window, else a new one — and the
// response policy (spec.response of the current policy, or quarantine on
// critical alerts) decides whether the host is quarantined. Every action
// it takes is proposed through Raft with the rule, alert and incident in
// its reason, so the audit log says why; in dry-run mode the incident's
// note records what would have been done instead.
package respond

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/policy"
	"github.com/palisade-sec/palisade/internal/secret"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Actor is the audit actor of automatic decisions.
const Actor = "system:responder"

// Responder turns alerts into incidents and actions.
type Responder struct {
	Store *store.Store
	Log   *slog.Logger
	Now   func() time.Time
}

func (r *Responder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// HandleAlerts processes one host's alerts in order. It is idempotent: an
// alert already linked to an incident is skipped, so a redelivery changes
// nothing.
func (r *Responder) HandleAlerts(ctx context.Context, hostID string, alerts []*palisadev1.Alert) error {
	for _, a := range alerts {
		if err := r.handle(ctx, hostID, a); err != nil {
			return fmt.Errorf("alert %s: %w", a.GetId(), err)
		}
	}
	return nil
}

// snapshot is what one decision reads from the replicated state.
type snapshot struct {
	host     *palisadev1.Host
	response *palisadev1.ResponsePolicy
	incident *palisadev1.Incident // open incident of the host and rule, in the window
	linked   bool                 // the alert is already in an incident
}

func (r *Responder) read(hostID string, a *palisadev1.Alert) (snapshot, bool) {
	var sn snapshot
	var ok bool
	now := r.now()
	r.Store.FSM().Read(func(s *fsm.State) {
		sn.host, ok = s.Host(hostID)
		sn.response = s.CurrentPolicy().GetBundle().GetResponse()
		if sn.response == nil {
			sn.response = policy.DefaultResponse()
		}
		window := time.Duration(sn.response.GetWindowSeconds()) * time.Second
		for _, in := range s.Incidents(func(in *palisadev1.Incident) bool { return in.GetHostId() == hostID }, 0) {
			if slices.Contains(in.GetAlertIds(), a.GetId()) {
				sn.linked = true
				return
			}
			if in.GetRule() == a.GetRule() && in.GetStatus() != palisadev1.IncidentStatus_INCIDENT_STATUS_RESOLVED &&
				now.Sub(in.GetUpdatedAt().AsTime()) <= window {
				if sn.incident == nil || in.GetUpdatedAt().AsTime().After(sn.incident.GetUpdatedAt().AsTime()) {
					sn.incident = in
				}
			}
		}
	})
	return sn, ok
}

func (r *Responder) handle(ctx context.Context, hostID string, a *palisadev1.Alert) error {
	sn, ok := r.read(hostID, a)
	if !ok {
		r.Log.Warn("alert from an unknown host dropped", "host", hostID, "alert", a.GetId())
		return nil
	}
	if sn.linked {
		return nil
	}
	incID := sn.incident.GetId()
	if incID == "" {
		incID = incidentID(hostID, a)
		err := r.apply(ctx, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_CreateIncident{CreateIncident: &palisadev1.CreateIncidentCmd{
			Incident: &palisadev1.Incident{
				Id: incID, HostId: hostID, Rule: a.GetRule(), Severity: a.GetSeverity(),
				Title: title(a), AlertIds: []string{a.GetId()}, CreatedBy: Actor,
			}}}})
		if err != nil && !errors.Is(err, fsm.ErrExists) {
			return err
		}
		r.Log.Warn("incident opened", "incident", incID, "host", hostID, "rule", a.GetRule(), "severity", a.GetSeverity())
	} else if err := r.apply(ctx, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_UpdateIncident{UpdateIncident: &palisadev1.UpdateIncidentCmd{
		IncidentId: incID, AddAlertIds: []string{a.GetId()}}}}); err != nil {
		return err
	}
	return r.respond(ctx, sn, incID, a)
}

// respond applies the first matching response rule.
func (r *Responder) respond(ctx context.Context, sn snapshot, incID string, a *palisadev1.Alert) error {
	idx, rule := match(sn.response, sn.host, a)
	if rule == nil || rule.GetAction() != "quarantine" {
		return nil
	}
	why := fmt.Sprintf("automatic: rule %q alert %s (%s) incident %s, response rule %d", a.GetRule(), a.GetId(), a.GetSeverity(), incID, idx)
	if sn.host.GetQuarantined() {
		return nil // already quarantined (or asked to be)
	}
	if sn.response.GetDryRun() {
		r.Log.Warn("dry run: would quarantine", "host", sn.host.GetId(), "incident", incID)
		return r.apply(ctx, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_UpdateIncident{UpdateIncident: &palisadev1.UpdateIncidentCmd{
			IncidentId: incID, Note: "dry run: would have quarantined the host (" + why + ")"}}})
	}
	act := &palisadev1.Action{Id: secret.ID("act-"), HostId: sn.host.GetId(), Kind: palisadev1.ActionKind_ACTION_KIND_QUARANTINE, IncidentId: incID}
	if err := r.apply(ctx, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_RequestQuarantine{RequestQuarantine: &palisadev1.RequestQuarantineCmd{
		HostId: sn.host.GetId(), Quarantine: true, Reason: why, Action: act}}}); err != nil {
		return err
	}
	r.Log.Warn("host quarantined automatically", "host", sn.host.GetId(), "incident", incID, "action", act.GetId(), "rule", a.GetRule())
	return r.apply(ctx, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_UpdateIncident{UpdateIncident: &palisadev1.UpdateIncidentCmd{
		IncidentId: incID, AddActionIds: []string{act.GetId()}}}})
}

// match returns the first response rule that applies to a on host.
func match(rp *palisadev1.ResponsePolicy, host *palisadev1.Host, a *palisadev1.Alert) (int, *palisadev1.ResponseRule) {
	for i, rule := range rp.GetRules() {
		if policy.SeverityRank(a.GetSeverity()) < policy.SeverityRank(rule.GetMinSeverity()) {
			continue
		}
		if rule.GetRule() != "" && rule.GetRule() != a.GetRule() {
			continue
		}
		labelsOK := true
		for k, v := range rule.GetHostLabels() {
			if host.GetLabels()[k] != v {
				labelsOK = false
				break
			}
		}
		if labelsOK {
			return i, rule
		}
	}
	return -1, nil
}

func (r *Responder) apply(ctx context.Context, cmd *palisadev1.FSMCommand) error {
	cmd.Time = timestamppb.New(r.now())
	cmd.Actor = Actor
	cmd.RequestId = secret.ID("req-")
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := r.Store.Apply(actx, cmd)
	return err
}

// incidentID derives an incident's id from its first alert, so a
// redelivered alert cannot open a second incident.
func incidentID(hostID string, a *palisadev1.Alert) string {
	sum := sha256.Sum256([]byte(hostID + "\x00" + a.GetRule() + "\x00" + a.GetId()))
	return "inc-" + hex.EncodeToString(sum[:8])
}

func title(a *palisadev1.Alert) string {
	t := a.GetRule()
	if d := a.GetDescription(); d != "" {
		t += ": " + d
	}
	if len(t) > 200 {
		t = t[:200]
	}
	return t
}
