package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func cmdOf(c any) *palisadev1.FSMCommand {
	cmd := &palisadev1.FSMCommand{}
	switch c := c.(type) {
	case *palisadev1.SetHostLabelsCmd:
		cmd.Cmd = &palisadev1.FSMCommand_SetHostLabels{SetHostLabels: c}
	case *palisadev1.RequestQuarantineCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RequestQuarantine{RequestQuarantine: c}
	case *palisadev1.CreateActionCmd:
		cmd.Cmd = &palisadev1.FSMCommand_CreateAction{CreateAction: c}
	case *palisadev1.UpdateActionCmd:
		cmd.Cmd = &palisadev1.FSMCommand_UpdateAction{UpdateAction: c}
	case *palisadev1.ApplyPolicyCmd:
		cmd.Cmd = &palisadev1.FSMCommand_ApplyPolicy{ApplyPolicy: c}
	case *palisadev1.RollbackPolicyCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RollbackPolicy{RollbackPolicy: c}
	case *palisadev1.CreateIncidentCmd:
		cmd.Cmd = &palisadev1.FSMCommand_CreateIncident{CreateIncident: c}
	case *palisadev1.UpdateIncidentCmd:
		cmd.Cmd = &palisadev1.FSMCommand_UpdateIncident{UpdateIncident: c}
	case *palisadev1.AddIOCCmd:
		cmd.Cmd = &palisadev1.FSMCommand_AddIoc{AddIoc: c}
	case *palisadev1.RemoveIOCCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RemoveIoc{RemoveIoc: c}
	case *palisadev1.AddLeakedCredentialCmd:
		cmd.Cmd = &palisadev1.FSMCommand_AddLeakedCredential{AddLeakedCredential: c}
	case *palisadev1.UpdateLeakedCredentialCmd:
		cmd.Cmd = &palisadev1.FSMCommand_UpdateLeakedCredential{UpdateLeakedCredential: c}
	case *palisadev1.RevokeAPITokenCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RevokeApiToken{RevokeApiToken: c}
	case *palisadev1.RegisterNodeCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RegisterNode{RegisterNode: c}
	case *palisadev1.RemoveNodeCmd:
		cmd.Cmd = &palisadev1.FSMCommand_RemoveNode{RemoveNode: c}
	default:
		panic(fmt.Sprintf("cmdOf: %T", c))
	}
	return cmd
}

func bundle(name string) *palisadev1.PolicyBundle {
	return &palisadev1.PolicyBundle{Name: name, SourceSha256: "s-" + name, Network: &palisadev1.NetworkPolicy{Deny: []string{"203.0.113.0/24"}}}
}

// full applies at least one command of every type.
func full(t *testing.T) *applier {
	a := populated(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.apply(t0, cmdOf(&palisadev1.SetHostLabelsCmd{HostId: "host-a", Labels: map[string]string{"env": "prod", "team": "x"}})))
	must(a.apply(t0, cmdOf(&palisadev1.CreateIncidentCmd{Incident: &palisadev1.Incident{Id: "inc-1", HostId: "host-a", Rule: "r", Severity: "high"}})))
	must(a.apply(t0, cmdOf(&palisadev1.RequestQuarantineCmd{HostId: "host-a", Quarantine: true, Reason: "pwned",
		Action: &palisadev1.Action{Id: "act-1", HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_QUARANTINE, IncidentId: "inc-1"}})))
	must(a.apply(t0, cmdOf(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: "act-2", HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_KILL, Pid: 42}})))
	must(a.apply(t0, cmdOf(&palisadev1.UpdateActionCmd{ActionId: "act-1", State: palisadev1.ActionState_ACTION_STATE_SENT})))
	must(a.apply(t0, cmdOf(&palisadev1.ApplyPolicyCmd{Policy: &palisadev1.PolicyVersion{Bundle: bundle("p1"), Source: []byte("yaml1")}})))
	must(a.apply(t0, cmdOf(&palisadev1.ApplyPolicyCmd{Policy: &palisadev1.PolicyVersion{Bundle: bundle("p2"), Source: []byte("yaml2")}})))
	must(a.apply(t0, cmdOf(&palisadev1.RollbackPolicyCmd{ToVersion: 1})))
	must(a.apply(t0, cmdOf(&palisadev1.UpdateIncidentCmd{IncidentId: "inc-1", Status: palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED, AddAlertIds: []string{"al-1"}})))
	must(a.apply(t0, cmdOf(&palisadev1.AddIOCCmd{Ioc: &palisadev1.IOC{Id: "ioc-1", Type: palisadev1.IOCType_IOC_TYPE_CIDR, Value: "198.51.100.0/24"}})))
	must(a.apply(t0, cmdOf(&palisadev1.AddIOCCmd{Ioc: &palisadev1.IOC{Id: "ioc-2", Type: palisadev1.IOCType_IOC_TYPE_IP, Value: "192.0.2.1"}})))
	must(a.apply(t0, cmdOf(&palisadev1.RemoveIOCCmd{IocId: "ioc-2"})))
	must(a.apply(t0, cmdOf(&palisadev1.AddLeakedCredentialCmd{Credential: &palisadev1.LeakedCredential{Id: "lc-1", KeyIdSha256: "abc", KeyIdMasked: "LTAI…"}})))
	must(a.apply(t0, cmdOf(&palisadev1.UpdateLeakedCredentialCmd{CredentialId: "lc-1", Status: palisadev1.LeakStatus_LEAK_STATUS_CONTAINED})))
	must(a.apply(t0, cmdOf(&palisadev1.RegisterNodeCmd{Node: &palisadev1.Node{Id: "n1", RaftAddress: "127.0.0.1:1", ApiUrl: "http://x"}})))
	must(a.apply(t0, cmdOf(&palisadev1.RegisterNodeCmd{Node: &palisadev1.Node{Id: "n2", RaftAddress: "127.0.0.1:2"}})))
	must(a.apply(t0, cmdOf(&palisadev1.RemoveNodeCmd{NodeId: "n2"})))
	must(a.apply(t0, cmdOf(&palisadev1.RevokeAPITokenCmd{TokenId: "tok-1"})))
	k := cmdOf(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: "act-3", HostId: "*", Kind: palisadev1.ActionKind_ACTION_KIND_BLOCK, Cidr: "198.51.100.0/24"}})
	k.IdempotencyKey, k.IdempotencyFingerprint, k.ResultId = "tok-1\x00k1", "fp", "act-3"
	must(a.apply(t0, k))
	return a
}

func TestApply_EveryCommandType(t *testing.T) {
	a := full(t)
	a.f.Read(func(s *State) {
		h, _ := s.Host("host-a")
		if !h.GetQuarantined() || h.GetQuarantineReason() != "pwned" || h.GetQuarantineActionId() != "act-1" || h.GetLabels()["team"] != "x" {
			t.Errorf("host = %v", h)
		}
		act, _ := s.Action("act-1")
		if act.GetState() != palisadev1.ActionState_ACTION_STATE_SENT || act.GetSentAt() == nil || act.GetActor() != "test" {
			t.Errorf("action = %v", act)
		}
		inc, _ := s.Incident("inc-1")
		if inc.GetStatus() != palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED || len(inc.GetActionIds()) != 1 || inc.GetAlertIds()[0] != "al-1" {
			t.Errorf("incident = %v", inc)
		}
		cur := s.CurrentPolicy()
		if cur.GetVersion() != 3 || cur.GetRolledBackFrom() != 1 || cur.GetBundle().GetName() != "p1" || cur.GetBundle().GetVersion() != 3 {
			t.Errorf("current policy = %v", cur)
		}
		if n := len(s.Policies()); n != 3 {
			t.Errorf("policies = %d, want 3", n)
		}
		if n := len(s.IOCs()); n != 1 {
			t.Errorf("iocs = %d", n)
		}
		if lc, _ := s.LeakedCredential("lc-1"); lc.GetStatus() != palisadev1.LeakStatus_LEAK_STATUS_CONTAINED {
			t.Errorf("leak = %v", lc)
		}
		if n := s.Nodes(); len(n) != 1 || n[0].GetId() != "n1" {
			t.Errorf("nodes = %v", n)
		}
		if tok, _ := s.APIToken("tok-1"); !tok.GetRevoked() {
			t.Errorf("token not revoked")
		}
		if got, want := s.AuditLen(), 5+19; got != want {
			t.Errorf("audit entries = %d, want %d (one per command)", got, want)
		}
		if acts := s.Actions(nil, 0); len(acts) != 3 || acts[0].GetId() != "act-3" {
			t.Errorf("actions newest first = %v", acts)
		}
	})
}

func TestSnapshot_RestoreEveryType(t *testing.T) {
	a := full(t)
	data := snapshotBytes(t, a.f)
	g := New(nil)
	if err := g.Restore(nopCloser{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stripHeader(t, data), stripHeader(t, snapshotBytes(t, g))) {
		t.Fatal("restored state differs from the snapshotted one")
	}
	// Indexes were rebuilt: duplicates are still refused, orders kept.
	ga := &applier{t: t, f: g, index: a.index}
	for name, c := range map[string]*palisadev1.FSMCommand{
		"ioc":  cmdOf(&palisadev1.AddIOCCmd{Ioc: &palisadev1.IOC{Id: "ioc-9", Type: palisadev1.IOCType_IOC_TYPE_CIDR, Value: "198.51.100.0/24"}}),
		"leak": cmdOf(&palisadev1.AddLeakedCredentialCmd{Credential: &palisadev1.LeakedCredential{Id: "lc-9", KeyIdSha256: "abc"}}),
	} {
		if err := ga.apply(t0, c); !errors.Is(err, ErrExists) {
			t.Errorf("%s duplicate after restore: err = %v, want ErrExists", name, err)
		}
	}
	k := cmdOf(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: "act-other", HostId: "*", Kind: palisadev1.ActionKind_ACTION_KIND_BLOCK}})
	k.IdempotencyKey, k.IdempotencyFingerprint, k.ResultId = "tok-1\x00k1", "fp", "act-other"
	data2, _ := proto.Marshal(withTime(k))
	ga.index++
	res := g.Apply(raftLog(ga.index, data2)).(*Result)
	if res.Err != nil || !res.Replayed || res.ResultID != "act-3" {
		t.Fatalf("replay after restore = %+v, want the original act-3", res)
	}
	if err := ga.apply(t0, cmdOf(&palisadev1.ApplyPolicyCmd{Policy: &palisadev1.PolicyVersion{Bundle: bundle("p4")}})); err != nil {
		t.Fatal(err)
	}
	g.Read(func(s *State) {
		if s.CurrentPolicy().GetVersion() != 4 {
			t.Errorf("next version after restore = %d, want 4", s.CurrentPolicy().GetVersion())
		}
	})
}

func TestApply_Idempotency(t *testing.T) {
	a := populated(t)
	mk := func(key, fp, id string) *palisadev1.FSMCommand {
		c := cmdOf(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: id, HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_KILL, Pid: 1}})
		c.IdempotencyKey, c.IdempotencyFingerprint, c.ResultId = key, fp, id
		return c
	}
	if err := a.apply(t0, mk("k", "fp1", "a1")); err != nil {
		t.Fatal(err)
	}
	before := snapshotBytes(t, a.f)
	// Same key, same request: replayed, nothing changes.
	c := withTime(mk("k", "fp1", "a2"))
	data, _ := proto.Marshal(c)
	a.index++
	res := a.f.Apply(raftLog(a.index, data)).(*Result)
	if res.Err != nil || !res.Replayed || res.ResultID != "a1" || res.ReplayedIndex != a.index-1 {
		t.Fatalf("replay = %+v", res)
	}
	if !bytes.Equal(stripHeader(t, before), stripHeader(t, snapshotBytes(t, a.f))) {
		t.Fatal("a replay changed the state")
	}
	// Same key, other request: refused.
	if err := a.apply(t0, mk("k", "fp2", "a3")); !errors.Is(err, ErrIdempotencyMismatch) {
		t.Fatalf("reused key: err = %v", err)
	}
	// After the TTL the key is free again.
	if err := a.apply(t0.Add(IdempotencyTTL+time.Second), mk("k", "fp2", "a4")); err != nil {
		t.Fatalf("key after expiry: %v", err)
	}
	// The record count is bounded.
	for i := range MaxIdempotencyRecords + 10 {
		if err := a.apply(t0.Add(IdempotencyTTL+time.Second), mk(fmt.Sprint("bulk", i), "f", fmt.Sprint("b", i))); err != nil {
			t.Fatal(err)
		}
	}
	a.f.Read(func(s *State) {
		if n := s.IdempotencyCount(); n > MaxIdempotencyRecords {
			t.Errorf("idempotency records = %d, want at most %d", n, MaxIdempotencyRecords)
		}
		if _, ok := s.Idempotency("bulk0"); ok {
			t.Error("the oldest record was kept past the cap")
		}
	})
}

func TestApply_StateErrorsChangeNothing(t *testing.T) {
	a := full(t)
	before := snapshotBytes(t, a.f)
	cases := []struct {
		name string
		cmd  *palisadev1.FSMCommand
		want error
	}{
		{"quarantine twice", cmdOf(&palisadev1.RequestQuarantineCmd{HostId: "host-a", Quarantine: true,
			Action: &palisadev1.Action{Id: "x1", HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_QUARANTINE}}), ErrConflict},
		{"quarantine unknown host", cmdOf(&palisadev1.RequestQuarantineCmd{HostId: "nope", Quarantine: true,
			Action: &palisadev1.Action{Id: "x1", HostId: "nope", Kind: palisadev1.ActionKind_ACTION_KIND_QUARANTINE}}), ErrNotFound},
		{"release with wrong action", cmdOf(&palisadev1.RequestQuarantineCmd{HostId: "host-a",
			Action: &palisadev1.Action{Id: "x1", HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_KILL}}), ErrInvalid},
		{"release to unknown incident", cmdOf(&palisadev1.RequestQuarantineCmd{HostId: "host-a",
			Action: &palisadev1.Action{Id: "x1", HostId: "host-a", Kind: palisadev1.ActionKind_ACTION_KIND_RELEASE, IncidentId: "nope"}}), ErrNotFound},
		{"action back to requested", cmdOf(&palisadev1.UpdateActionCmd{ActionId: "act-1", State: palisadev1.ActionState_ACTION_STATE_REQUESTED}), ErrConflict},
		{"ack again", cmdOf(&palisadev1.UpdateIncidentCmd{IncidentId: "inc-1", Status: palisadev1.IncidentStatus_INCIDENT_STATUS_ACKNOWLEDGED}), ErrConflict},
		{"rollback to current", cmdOf(&palisadev1.RollbackPolicyCmd{ToVersion: 3}), ErrConflict},
		{"rollback to unknown", cmdOf(&palisadev1.RollbackPolicyCmd{ToVersion: 30}), ErrNotFound},
		{"remove unknown ioc", cmdOf(&palisadev1.RemoveIOCCmd{IocId: "nope"}), ErrNotFound},
		{"revoke twice", cmdOf(&palisadev1.RevokeAPITokenCmd{TokenId: "tok-1"}), ErrConflict},
		{"kill on unknown host", cmdOf(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: "x2", HostId: "nope", Kind: palisadev1.ActionKind_ACTION_KIND_KILL}}), ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.apply(t0, tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(stripHeader(t, before), stripHeader(t, snapshotBytes(t, a.f))) {
				t.Fatal("state changed after a refused command")
			}
		})
	}
}
