package eventstore

import (
	"testing"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func exec(pid uint32) *palisadev1.Event {
	return &palisadev1.Event{Process: &palisadev1.Process{Pid: pid}, Kind: &palisadev1.Event_Exec{Exec: &palisadev1.ExecEvent{}}}
}

func conn(pid uint32) *palisadev1.Event {
	return &palisadev1.Event{Process: &palisadev1.Process{Pid: pid}, Kind: &palisadev1.Event_Connect{Connect: &palisadev1.ConnectEvent{}}}
}

func pids(evs []*palisadev1.Event) []uint32 {
	var out []uint32
	for _, e := range evs {
		out = append(out, e.GetProcess().GetPid())
	}
	return out
}

func TestStore_RingKeepsNewestAndFilters(t *testing.T) {
	s := New(4)
	s.Add("h1", []*palisadev1.Event{exec(1), conn(2), exec(3)})
	s.Add("h1", []*palisadev1.Event{conn(4), exec(5), {Process: &palisadev1.Process{Pid: 6}, HostId: "forged"}})
	s.Add("h2", []*palisadev1.Event{exec(100)})

	if got := pids(s.List("h1", KindAll, 10)); len(got) != 4 || got[0] != 6 || got[3] != 3 {
		t.Fatalf("h1 all = %v, want [6 5 4 3]", got)
	}
	if got := pids(s.List("h1", KindExec, 10)); len(got) != 2 || got[0] != 5 || got[1] != 3 {
		t.Fatalf("h1 exec = %v, want [5 3]", got)
	}
	if got := pids(s.List("h1", KindAll, 2)); len(got) != 2 || got[0] != 6 {
		t.Fatalf("h1 limit 2 = %v, want [6 5]", got)
	}
	if got := s.List("h1", KindAll, 10)[0].GetHostId(); got != "h1" {
		t.Fatalf("host id = %q, want the subject's h1", got)
	}
	if got := s.List("nobody", KindAll, 10); got != nil {
		t.Fatalf("unknown host: %v", got)
	}
	if _, err := ParseKind("bogus"); err == nil {
		t.Fatal("ParseKind accepted bogus")
	}
}
