package fsm

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Idempotency records live this long after the command that made them,
// and at most MaxIdempotencyRecords are kept (the oldest go first).
const (
	IdempotencyTTL        = 24 * time.Hour
	MaxIdempotencyRecords = 10000
)

// pruneIdempotency drops expired records and, past the cap, the oldest.
// It runs inside apply with the command's (leader-stamped) time, so every
// node prunes the same records.
func pruneIdempotency(s *State, now time.Time) {
	n := 0
	for n < len(s.idemOrder) {
		rec := s.idem[s.idemOrder[n]]
		if len(s.idemOrder)-n < MaxIdempotencyRecords && rec != nil && now.Before(rec.GetExpiresAt().AsTime()) {
			break
		}
		delete(s.idem, s.idemOrder[n])
		n++
	}
	if n > 0 {
		s.idemOrder = slices.Delete(s.idemOrder, 0, n)
	}
}

func rememberIdempotency(s *State, rec *palisadev1.IdempotencyRecord) {
	s.idem[rec.GetKey()] = rec
	s.idemOrder = append(s.idemOrder, rec.GetKey())
}

func applySetHostLabels(s *State, c *palisadev1.SetHostLabelsCmd) (*palisadev1.AuditEntry, error) {
	h, ok := s.hosts[c.GetHostId()]
	if !ok {
		return nil, fmt.Errorf("host %s: %w", c.GetHostId(), ErrNotFound)
	}
	h.Labels = maps.Clone(c.GetLabels())
	return &palisadev1.AuditEntry{Action: "host.labels", Target: h.GetId(), Detail: labelDetail(c.GetLabels())}, nil
}

func labelDetail(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += k + "=" + m[k]
	}
	return out
}

// newAction fills the fields every action gets from its command.
func newAction(cmd *palisadev1.FSMCommand, a *palisadev1.Action) (*palisadev1.Action, error) {
	if a.GetId() == "" || a.GetKind() == palisadev1.ActionKind_ACTION_KIND_UNSPECIFIED || a.GetHostId() == "" {
		return nil, fmt.Errorf("action: id, kind and host are required: %w", ErrInvalid)
	}
	out := proto.CloneOf(a)
	out.State = palisadev1.ActionState_ACTION_STATE_REQUESTED
	out.RequestedAt = cmd.GetTime()
	if out.Actor == "" {
		out.Actor = cmd.GetActor()
	}
	return out, nil
}

func addAction(s *State, a *palisadev1.Action) error {
	if _, ok := s.actions[a.GetId()]; ok {
		return fmt.Errorf("action %s: %w", a.GetId(), ErrExists)
	}
	if a.GetIncidentId() != "" {
		inc, ok := s.incidents[a.GetIncidentId()]
		if !ok {
			return fmt.Errorf("incident %s: %w", a.GetIncidentId(), ErrNotFound)
		}
		inc.ActionIds = append(inc.ActionIds, a.GetId())
		inc.UpdatedAt = a.GetRequestedAt()
	}
	s.actions[a.GetId()] = a
	s.actionOrder = append(s.actionOrder, a.GetId())
	return nil
}

func applyRequestQuarantine(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.RequestQuarantineCmd) (*palisadev1.AuditEntry, error) {
	h, ok := s.hosts[c.GetHostId()]
	if !ok {
		return nil, fmt.Errorf("host %s: %w", c.GetHostId(), ErrNotFound)
	}
	if h.GetQuarantined() == c.GetQuarantine() {
		if c.GetQuarantine() {
			return nil, fmt.Errorf("host %s is already quarantined: %w", h.GetId(), ErrConflict)
		}
		return nil, fmt.Errorf("host %s is not quarantined: %w", h.GetId(), ErrConflict)
	}
	want := palisadev1.ActionKind_ACTION_KIND_RELEASE
	if c.GetQuarantine() {
		want = palisadev1.ActionKind_ACTION_KIND_QUARANTINE
	}
	if c.GetAction().GetKind() != want || c.GetAction().GetHostId() != h.GetId() {
		return nil, fmt.Errorf("quarantine: action must be a %s of host %s: %w", want, h.GetId(), ErrInvalid)
	}
	a, err := newAction(cmd, c.GetAction())
	if err != nil {
		return nil, err
	}
	a.Reason = c.GetReason()
	// Validate before mutating: addAction is the last step that can fail.
	if err := addAction(s, a); err != nil {
		return nil, err
	}
	h.Quarantined = c.GetQuarantine()
	h.QuarantineReason = c.GetReason()
	h.QuarantineChangedAt = cmd.GetTime()
	h.QuarantineActionId = a.GetId()
	verb := "host.release"
	if c.GetQuarantine() {
		verb = "host.quarantine"
	}
	return &palisadev1.AuditEntry{Action: verb, Target: h.GetId(), Detail: fmt.Sprintf("action=%s reason=%s", a.GetId(), c.GetReason())}, nil
}

func applyCreateAction(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.CreateActionCmd) (*palisadev1.AuditEntry, error) {
	a, err := newAction(cmd, c.GetAction())
	if err != nil {
		return nil, err
	}
	switch a.GetKind() {
	case palisadev1.ActionKind_ACTION_KIND_QUARANTINE, palisadev1.ActionKind_ACTION_KIND_RELEASE:
		return nil, fmt.Errorf("quarantine and release go through RequestQuarantineCmd: %w", ErrInvalid)
	}
	if a.GetHostId() != "*" {
		if _, ok := s.hosts[a.GetHostId()]; !ok {
			return nil, fmt.Errorf("host %s: %w", a.GetHostId(), ErrNotFound)
		}
	}
	if err := addAction(s, a); err != nil {
		return nil, err
	}
	return &palisadev1.AuditEntry{Action: "action." + actionVerb(a.GetKind()), Target: a.GetHostId(),
		Detail: fmt.Sprintf("action=%s reason=%s", a.GetId(), a.GetReason())}, nil
}

func actionVerb(k palisadev1.ActionKind) string {
	switch k {
	case palisadev1.ActionKind_ACTION_KIND_QUARANTINE:
		return "quarantine"
	case palisadev1.ActionKind_ACTION_KIND_RELEASE:
		return "release"
	case palisadev1.ActionKind_ACTION_KIND_KILL:
		return "kill"
	case palisadev1.ActionKind_ACTION_KIND_BLOCK:
		return "block"
	case palisadev1.ActionKind_ACTION_KIND_HUNT_CREDENTIAL:
		return "hunt_credential"
	}
	return "unknown"
}

// ActionTransitionAllowed reports whether an action may move from one
// state to another: requested -> sent -> acked | failed | expired, and
// requested -> failed | expired (never delivered).
func ActionTransitionAllowed(from, to palisadev1.ActionState) bool {
	switch from {
	case palisadev1.ActionState_ACTION_STATE_REQUESTED:
		return to == palisadev1.ActionState_ACTION_STATE_SENT || to == palisadev1.ActionState_ACTION_STATE_FAILED ||
			to == palisadev1.ActionState_ACTION_STATE_EXPIRED || to == palisadev1.ActionState_ACTION_STATE_ACKED
	case palisadev1.ActionState_ACTION_STATE_SENT:
		return to == palisadev1.ActionState_ACTION_STATE_ACKED || to == palisadev1.ActionState_ACTION_STATE_FAILED ||
			to == palisadev1.ActionState_ACTION_STATE_EXPIRED
	}
	return false
}

func applyUpdateAction(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.UpdateActionCmd) (*palisadev1.AuditEntry, error) {
	a, ok := s.actions[c.GetActionId()]
	if !ok {
		return nil, fmt.Errorf("action %s: %w", c.GetActionId(), ErrNotFound)
	}
	if !ActionTransitionAllowed(a.GetState(), c.GetState()) {
		return nil, fmt.Errorf("action %s: %s -> %s: %w", a.GetId(), a.GetState(), c.GetState(), ErrConflict)
	}
	a.State = c.GetState()
	if c.GetState() == palisadev1.ActionState_ACTION_STATE_SENT {
		a.SentAt = cmd.GetTime()
	} else {
		a.FinishedAt = cmd.GetTime()
	}
	if c.GetError() != "" {
		a.Error = c.GetError()
	}
	if c.GetDetail() != "" {
		a.Detail = c.GetDetail()
	}
	return &palisadev1.AuditEntry{Action: "action.update", Target: a.GetId(), Detail: "state=" + c.GetState().String()}, nil
}

func applyApplyPolicy(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.ApplyPolicyCmd) (*palisadev1.AuditEntry, error) {
	p := c.GetPolicy()
	if p.GetBundle() == nil {
		return nil, fmt.Errorf("apply policy: no bundle: %w", ErrInvalid)
	}
	v := proto.CloneOf(p)
	addPolicyVersion(s, cmd, v)
	return &palisadev1.AuditEntry{Action: "policy.apply", Target: fmt.Sprintf("v%d", v.GetVersion()),
		Detail: fmt.Sprintf("name=%s sha256=%s", v.GetBundle().GetName(), v.GetBundle().GetSourceSha256())}, nil
}

// addPolicyVersion numbers v as the next version and stamps its bundle.
func addPolicyVersion(s *State, cmd *palisadev1.FSMCommand, v *palisadev1.PolicyVersion) {
	s.latestPolicy++
	v.Version = s.latestPolicy
	v.CreatedAt = cmd.GetTime()
	if v.CreatedBy == "" {
		v.CreatedBy = cmd.GetActor()
	}
	v.Bundle.Version = v.GetVersion()
	v.Bundle.CreatedAt = cmd.GetTime()
	s.policies[v.GetVersion()] = v
}

func applyRollbackPolicy(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.RollbackPolicyCmd) (*palisadev1.AuditEntry, error) {
	old, ok := s.policies[c.GetToVersion()]
	if !ok {
		return nil, fmt.Errorf("policy version %d: %w", c.GetToVersion(), ErrNotFound)
	}
	if c.GetToVersion() == s.latestPolicy {
		return nil, fmt.Errorf("policy version %d is already the current one: %w", c.GetToVersion(), ErrConflict)
	}
	v := &palisadev1.PolicyVersion{
		Bundle: proto.CloneOf(old.GetBundle()), SourceName: old.GetSourceName(), Source: old.GetSource(),
		Comment: c.GetComment(), RolledBackFrom: old.GetVersion(),
	}
	addPolicyVersion(s, cmd, v)
	return &palisadev1.AuditEntry{Action: "policy.rollback", Target: fmt.Sprintf("v%d", v.GetVersion()),
		Detail: fmt.Sprintf("to=v%d", old.GetVersion())}, nil
}

func applyCreateIncident(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.CreateIncidentCmd) (*palisadev1.AuditEntry, error) {
	in := c.GetIncident()
	if in.GetId() == "" || in.GetHostId() == "" {
		return nil, fmt.Errorf("incident: id and host are required: %w", ErrInvalid)
	}
	if _, ok := s.incidents[in.GetId()]; ok {
		return nil, fmt.Errorf("incident %s: %w", in.GetId(), ErrExists)
	}
	if _, ok := s.hosts[in.GetHostId()]; !ok {
		return nil, fmt.Errorf("host %s: %w", in.GetHostId(), ErrNotFound)
	}
	for _, id := range in.GetActionIds() {
		if _, ok := s.actions[id]; !ok {
			return nil, fmt.Errorf("action %s: %w", id, ErrNotFound)
		}
	}
	inc := proto.CloneOf(in)
	inc.Status = palisadev1.IncidentStatus_INCIDENT_STATUS_OPEN
	inc.CreatedAt, inc.UpdatedAt = cmd.GetTime(), cmd.GetTime()
	if inc.CreatedBy == "" {
		inc.CreatedBy = cmd.GetActor()
	}
	s.incidents[inc.GetId()] = inc
	s.incidentOrder = append(s.incidentOrder, inc.GetId())
	return &palisadev1.AuditEntry{Action: "incident.create", Target: inc.GetId(),
		Detail: fmt.Sprintf("host=%s rule=%s severity=%s", inc.GetHostId(), inc.GetRule(), inc.GetSeverity())}, nil
}

func applyUpdateIncident(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.UpdateIncidentCmd) (*palisadev1.AuditEntry, error) {
	inc, ok := s.incidents[c.GetIncidentId()]
	if !ok {
		return nil, fmt.Errorf("incident %s: %w", c.GetIncidentId(), ErrNotFound)
	}
	for _, id := range c.GetAddActionIds() {
		if _, ok := s.actions[id]; !ok {
			return nil, fmt.Errorf("action %s: %w", id, ErrNotFound)
		}
	}
	verb := "incident.update"
	switch st := c.GetStatus(); st {
	case palisadev1.IncidentStatus_INCIDENT_STATUS_UNSPECIFIED:
	case palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED:
		if inc.GetStatus() != palisadev1.IncidentStatus_INCIDENT_STATUS_OPEN {
			return nil, fmt.Errorf("incident %s is %s: %w", inc.GetId(), statusWord(inc.GetStatus()), ErrConflict)
		}
		inc.AcknowledgedBy, inc.AcknowledgedAt = cmd.GetActor(), cmd.GetTime()
		verb = "incident.acknowledge"
	case palisadev1.IncidentStatus_INCIDENT_STATUS_RESOLVED:
		if inc.GetStatus() == palisadev1.IncidentStatus_INCIDENT_STATUS_RESOLVED {
			return nil, fmt.Errorf("incident %s is already resolved: %w", inc.GetId(), ErrConflict)
		}
		inc.ResolvedBy, inc.ResolvedAt = cmd.GetActor(), cmd.GetTime()
		verb = "incident.resolve"
	default:
		return nil, fmt.Errorf("incident status %s: %w", st, ErrInvalid)
	}
	if c.GetStatus() != palisadev1.IncidentStatus_INCIDENT_STATUS_UNSPECIFIED {
		inc.Status = c.GetStatus()
	}
	if c.GetNote() != "" {
		inc.Note = c.GetNote()
	}
	inc.AlertIds = appendNew(inc.AlertIds, c.GetAddAlertIds())
	inc.ActionIds = appendNew(inc.ActionIds, c.GetAddActionIds())
	inc.UpdatedAt = cmd.GetTime()
	return &palisadev1.AuditEntry{Action: verb, Target: inc.GetId(), Detail: c.GetNote()}, nil
}

func statusWord(st palisadev1.IncidentStatus) string {
	switch st {
	case palisadev1.IncidentStatus_INCIDENT_STATUS_OPEN:
		return "open"
	case palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED:
		return "acknowledged"
	case palisadev1.IncidentStatus_INCIDENT_STATUS_RESOLVED:
		return "resolved"
	}
	return "unknown"
}

func appendNew(list, add []string) []string {
	for _, x := range add {
		if !slices.Contains(list, x) {
			list = append(list, x)
		}
	}
	return list
}

func iocKey(t palisadev1.IOCType, v string) string { return t.String() + "/" + v }

func applyAddIOC(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.AddIOCCmd) (*palisadev1.AuditEntry, error) {
	in := c.GetIoc()
	if in.GetId() == "" || in.GetValue() == "" || in.GetType() == palisadev1.IOCType_IOC_TYPE_UNSPECIFIED {
		return nil, fmt.Errorf("ioc: id, type and value are required: %w", ErrInvalid)
	}
	if _, ok := s.iocs[in.GetId()]; ok {
		return nil, fmt.Errorf("ioc %s: %w", in.GetId(), ErrExists)
	}
	k := iocKey(in.GetType(), in.GetValue())
	if id, ok := s.iocByValue[k]; ok {
		return nil, fmt.Errorf("ioc %s (%s): %w", in.GetValue(), id, ErrExists)
	}
	ioc := proto.CloneOf(in)
	ioc.CreatedAt = cmd.GetTime()
	if ioc.CreatedBy == "" {
		ioc.CreatedBy = cmd.GetActor()
	}
	s.iocs[ioc.GetId()] = ioc
	s.iocByValue[k] = ioc.GetId()
	return &palisadev1.AuditEntry{Action: "ioc.add", Target: ioc.GetId(), Detail: fmt.Sprintf("%s %s source=%s", ioc.GetType(), ioc.GetValue(), ioc.GetSource())}, nil
}

func applyRemoveIOC(s *State, c *palisadev1.RemoveIOCCmd) (*palisadev1.AuditEntry, error) {
	ioc, ok := s.iocs[c.GetIocId()]
	if !ok {
		return nil, fmt.Errorf("ioc %s: %w", c.GetIocId(), ErrNotFound)
	}
	delete(s.iocs, ioc.GetId())
	delete(s.iocByValue, iocKey(ioc.GetType(), ioc.GetValue()))
	return &palisadev1.AuditEntry{Action: "ioc.remove", Target: ioc.GetId(), Detail: ioc.GetValue()}, nil
}

func applyAddLeak(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.AddLeakedCredentialCmd) (*palisadev1.AuditEntry, error) {
	in := c.GetCredential()
	if in.GetId() == "" || in.GetKeyIdSha256() == "" {
		return nil, fmt.Errorf("leaked credential: id and key hash are required: %w", ErrInvalid)
	}
	if _, ok := s.leaks[in.GetId()]; ok {
		return nil, fmt.Errorf("leaked credential %s: %w", in.GetId(), ErrExists)
	}
	if id, ok := s.leakByHash[in.GetKeyIdSha256()]; ok {
		return nil, fmt.Errorf("leaked credential %s (%s): %w", in.GetKeyIdMasked(), id, ErrExists)
	}
	lc := proto.CloneOf(in)
	lc.Status = palisadev1.LeakStatus_LEAK_STATUS_ACTIVE
	lc.CreatedAt, lc.UpdatedAt = cmd.GetTime(), cmd.GetTime()
	if lc.ReportedBy == "" {
		lc.ReportedBy = cmd.GetActor()
	}
	s.leaks[lc.GetId()] = lc
	s.leakByHash[lc.GetKeyIdSha256()] = lc.GetId()
	return &palisadev1.AuditEntry{Action: "leaked_credential.add", Target: lc.GetId(), Detail: fmt.Sprintf("%s %s", lc.GetProvider(), lc.GetKeyIdMasked())}, nil
}

func applyUpdateLeak(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.UpdateLeakedCredentialCmd) (*palisadev1.AuditEntry, error) {
	lc, ok := s.leaks[c.GetCredentialId()]
	if !ok {
		return nil, fmt.Errorf("leaked credential %s: %w", c.GetCredentialId(), ErrNotFound)
	}
	if c.GetStatus() == palisadev1.LeakStatus_LEAK_STATUS_UNSPECIFIED {
		return nil, fmt.Errorf("leaked credential status: %w", ErrInvalid)
	}
	lc.Status = c.GetStatus()
	lc.UpdatedAt = cmd.GetTime()
	return &palisadev1.AuditEntry{Action: "leaked_credential.update", Target: lc.GetId(), Detail: "status=" + c.GetStatus().String()}, nil
}

func applyRevokeAPIToken(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.RevokeAPITokenCmd) (*palisadev1.AuditEntry, error) {
	t, ok := s.apiTokens[c.GetTokenId()]
	if !ok {
		return nil, fmt.Errorf("api token %s: %w", c.GetTokenId(), ErrNotFound)
	}
	if t.GetRevoked() {
		return nil, fmt.Errorf("api token %s is already revoked: %w", t.GetId(), ErrConflict)
	}
	t.Revoked, t.RevokedAt, t.RevokedBy = true, cmd.GetTime(), cmd.GetActor()
	return &palisadev1.AuditEntry{Action: "api_token.revoke", Target: t.GetId(), Detail: "name=" + t.GetName()}, nil
}

func applyRegisterNode(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.RegisterNodeCmd) (*palisadev1.AuditEntry, error) {
	n := c.GetNode()
	if n.GetId() == "" || n.GetRaftAddress() == "" {
		return nil, fmt.Errorf("node: id and raft address are required: %w", ErrInvalid)
	}
	nn := proto.CloneOf(n)
	nn.UpdatedAt = cmd.GetTime()
	s.nodes[nn.GetId()] = nn
	return &palisadev1.AuditEntry{Action: "cluster.node.register", Target: nn.GetId(),
		Detail: fmt.Sprintf("raft=%s api=%s nats-cluster=%s", nn.GetRaftAddress(), nn.GetApiUrl(), nn.GetNatsClusterAddress())}, nil
}

func applyRemoveNode(s *State, c *palisadev1.RemoveNodeCmd) (*palisadev1.AuditEntry, error) {
	if c.GetNodeId() == "" {
		return nil, fmt.Errorf("node id: %w", ErrInvalid)
	}
	// Removing a node that was never registered still records the
	// removal: the Raft configuration change has happened either way.
	delete(s.nodes, c.GetNodeId())
	return &palisadev1.AuditEntry{Action: "cluster.node.remove", Target: c.GetNodeId()}, nil
}
