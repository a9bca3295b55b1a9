package api

import (
	"strings"

	"github.com/palisade-sec/palisade/internal/apiv1"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// enumWord turns FOO_BAR_HUNT_CREDENTIAL into "hunt-credential" given the
// prefix "FOO_BAR_".
func enumWord(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}

func actionKindWord(k palisadev1.ActionKind) string { return enumWord(k.String(), "ACTION_KIND_") }
func actionStateWord(k palisadev1.ActionState) string {
	return enumWord(k.String(), "ACTION_STATE_")
}
func incidentStatusWord(k palisadev1.IncidentStatus) string {
	return enumWord(k.String(), "INCIDENT_STATUS_")
}
func iocTypeWord(k palisadev1.IOCType) string       { return enumWord(k.String(), "IOC_TYPE_") }
func leakStatusWord(k palisadev1.LeakStatus) string { return enumWord(k.String(), "LEAK_STATUS_") }

// parseEnum finds the enum value whose word is w.
func parseEnum[T ~int32](w string, names map[int32]string, word func(T) string) (T, bool) {
	for v := range names {
		if v != 0 && word(T(v)) == w {
			return T(v), true
		}
	}
	return 0, false
}

func actionView(a *palisadev1.Action) apiv1.Action {
	return apiv1.Action{
		ID: a.GetId(), HostID: a.GetHostId(), Kind: actionKindWord(a.GetKind()), State: actionStateWord(a.GetState()),
		Actor: a.GetActor(), Reason: a.GetReason(), IncidentID: a.GetIncidentId(),
		RequestedAt: timeOrNil(a.GetRequestedAt()), SentAt: timeOrNil(a.GetSentAt()), FinishedAt: timeOrNil(a.GetFinishedAt()),
		ExpiresAt: timeOrNil(a.GetExpiresAt()), Error: a.GetError(), Detail: a.GetDetail(),
		PID: a.GetPid(), Tree: a.GetTree(), CIDR: a.GetCidr(),
	}
}

func incidentView(i *palisadev1.Incident) apiv1.Incident {
	v := apiv1.Incident{
		ID: i.GetId(), HostID: i.GetHostId(), Rule: i.GetRule(), Severity: i.GetSeverity(),
		Status: incidentStatusWord(i.GetStatus()), Title: i.GetTitle(),
		AlertIDs: i.GetAlertIds(), ActionIDs: i.GetActionIds(),
		CreatedAt: timeOrNil(i.GetCreatedAt()), UpdatedAt: timeOrNil(i.GetUpdatedAt()), CreatedBy: i.GetCreatedBy(),
		AcknowledgedBy: i.GetAcknowledgedBy(), AcknowledgedAt: timeOrNil(i.GetAcknowledgedAt()),
		ResolvedBy: i.GetResolvedBy(), ResolvedAt: timeOrNil(i.GetResolvedAt()), Note: i.GetNote(),
	}
	if v.AlertIDs == nil {
		v.AlertIDs = []string{}
	}
	if v.ActionIDs == nil {
		v.ActionIDs = []string{}
	}
	return v
}

func tokenView(t *palisadev1.APIToken) apiv1.APIToken {
	return apiv1.APIToken{
		ID: t.GetId(), Name: t.GetName(), Role: RoleName(t.GetRole()), CreatedAt: timeOrNil(t.GetCreatedAt()),
		CreatedBy: t.GetCreatedBy(), ExpiresAt: timeOrNil(t.GetExpiresAt()), Revoked: t.GetRevoked(),
		RevokedAt: timeOrNil(t.GetRevokedAt()), RevokedBy: t.GetRevokedBy(),
	}
}

func leakView(l *palisadev1.LeakedCredential) apiv1.LeakedCredential {
	return apiv1.LeakedCredential{
		ID: l.GetId(), Provider: l.GetProvider(), KeyIDMasked: l.GetKeyIdMasked(), KeyIDSHA256: l.GetKeyIdSha256(),
		ReportedBy: l.GetReportedBy(), Source: l.GetSource(), Status: leakStatusWord(l.GetStatus()),
		CreatedAt: timeOrNil(l.GetCreatedAt()), UpdatedAt: timeOrNil(l.GetUpdatedAt()), Comment: l.GetComment(),
	}
}
