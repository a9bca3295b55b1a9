package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/go-cmp/cmp"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (a *applier) apply(at time.Time, cmd *palisadev1.FSMCommand) error {
	a.t.Helper()
	cmd.Time = timestamppb.New(at)
	cmd.Actor = "test"
	data, err := proto.Marshal(cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	res := a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data}).(*Result)
	return res.Err
}

func initCmd() *palisadev1.FSMCommand {
	return &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_InitCluster{InitCluster: &palisadev1.InitClusterCmd{
		Info: &palisadev1.ClusterInfo{ClusterId: "c-1", SigningPublicKey: bytes.Repeat([]byte{1}, 32)}}}}
}

func enrollTokenCmd(id, hash string, exp time.Time) *palisadev1.FSMCommand {
	return &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_CreateEnrollToken{CreateEnrollToken: &palisadev1.CreateEnrollTokenCmd{
		Token: &palisadev1.EnrollToken{Id: id, Sha256: hash, ExpiresAt: timestamppb.New(exp), Labels: map[string]string{"env": "prod"}}}}}
}

func enrollCmd(hash, hostID string) *palisadev1.FSMCommand {
	return &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_EnrollHost{EnrollHost: &palisadev1.EnrollHostCmd{
		TokenSha256: hash, Host: &palisadev1.Host{Id: hostID, Hostname: hostID + ".example", Nkey: "U" + hostID}}}}
}

func populated(t *testing.T) *applier {
	a := &applier{t: t, f: New(nil)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.apply(t0, initCmd()))
	must(a.apply(t0, &palisadev1.FSMCommand{Cmd: &palisadev1.FSMCommand_CreateApiToken{CreateApiToken: &palisadev1.CreateAPITokenCmd{
		Token: &palisadev1.APIToken{Id: "tok-1", Name: "admin", Role: palisadev1.Role_ROLE_ADMIN, Sha256: "aa"}}}}))
	must(a.apply(t0, enrollTokenCmd("et-1", "h1", t0.Add(time.Hour))))
	must(a.apply(t0, enrollTokenCmd("et-2", "h2", t0.Add(time.Hour))))
	must(a.apply(t0.Add(time.Minute), enrollCmd("h1", "host-a")))
	return a
}

func TestApply_EnrollConsumesTokenAndRecordsHost(t *testing.T) {
	a := populated(t)
	a.f.Read(func(s *State) {
		h, ok := s.Host("host-a")
		if !ok {
			t.Fatal("host not recorded")
		}
		if h.GetEnrollTokenId() != "et-1" || h.GetLabels()["env"] != "prod" {
			t.Errorf("host = %v, want token et-1 and label env=prod", h)
		}
		if !h.GetEnrolledAt().AsTime().Equal(t0.Add(time.Minute)) {
			t.Errorf("enrolled_at = %v, want the command's time", h.GetEnrolledAt().AsTime())
		}
		toks := s.EnrollTokens()
		if toks[0].GetUsedByHost() != "host-a" || toks[1].GetUsedByHost() != "" {
			t.Errorf("tokens after enrolment: %v", toks)
		}
		if got := len(s.Audit(0, 0)); got != 5 {
			t.Errorf("audit entries = %d, want 5 (one per command)", got)
		}
	})
}

func TestApply_BadEnrolmentChangesNothing(t *testing.T) {
	a := populated(t)
	if err := a.apply(t0, enrollTokenCmd("et-3", "h3", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	before := snapshotBytes(t, a.f)
	cases := []struct {
		name string
		at   time.Time
		cmd  *palisadev1.FSMCommand
		want error
	}{
		{"unknown token", t0, enrollCmd("nope", "host-x"), ErrTokenInvalid},
		{"reused token", t0, enrollCmd("h1", "host-y"), ErrTokenUsed},
		{"expired token", t0.Add(2 * time.Minute), enrollCmd("h3", "host-z"), ErrTokenExpired},
		{"expires exactly now", t0.Add(time.Minute), enrollCmd("h3", "host-z"), ErrTokenExpired},
		{"duplicate host id", t0, enrollCmd("h2", "host-a"), ErrExists},
		{"second init", t0, initCmd(), ErrAlreadyInited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := a.apply(tc.at, tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if after := snapshotBytes(t, a.f); !bytes.Equal(stripHeader(t, before), stripHeader(t, after)) {
				t.Fatal("state changed after a refused command")
			}
		})
	}
}

func TestApply_UnknownCommand(t *testing.T) {
	a := &applier{t: t, f: New(nil)}
	if err := a.apply(t0, &palisadev1.FSMCommand{}); !errors.Is(err, ErrUnknownCmd) {
		t.Fatalf("err = %v, want ErrUnknownCmd", err)
	}
	if err := a.apply(t0, &palisadev1.FSMCommand{IgnoreIfUnknown: true}); err != nil {
		t.Fatalf("ignorable unknown command: err = %v, want nil", err)
	}
	res := a.f.Apply(&raft.Log{Index: 99, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}).(*Result)
	if res.Err == nil {
		t.Fatal("undecodable entry: want an error")
	}
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteRecords(&buf, snap.(*snapshot).records); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stripHeader drops the first record (its timestamp differs every time).
func stripHeader(t *testing.T, b []byte) []byte {
	t.Helper()
	s, err := ReadSnapshot(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	f := &FSM{state: s}
	snap, _ := f.Snapshot()
	if err := WriteRecords(&buf, snap.(*snapshot).records[1:]); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshot_RestoreRoundTrip(t *testing.T) {
	a := populated(t)
	data := snapshotBytes(t, a.f)

	g := New(nil)
	changed := 0
	g.OnChange(func() { changed++ })
	if err := g.Restore(nopCloser{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if changed != 1 {
		t.Errorf("OnChange called %d times on restore, want 1", changed)
	}
	var want, got struct {
		hosts  []*palisadev1.Host
		api    []*palisadev1.APIToken
		enroll []*palisadev1.EnrollToken
		audit  []*palisadev1.AuditEntry
		ci     *palisadev1.ClusterInfo
		last   uint64
	}
	read := func(f *FSM, out *struct {
		hosts  []*palisadev1.Host
		api    []*palisadev1.APIToken
		enroll []*palisadev1.EnrollToken
		audit  []*palisadev1.AuditEntry
		ci     *palisadev1.ClusterInfo
		last   uint64
	}) {
		f.Read(func(s *State) {
			out.hosts, out.api, out.enroll, out.audit, out.ci, out.last = s.Hosts(), s.APITokens(), s.EnrollTokens(), s.Audit(0, 0), s.Cluster(), s.LastIndex()
		})
	}
	read(a.f, &want)
	read(g, &got)
	if diff := cmp.Diff(want, got, protocmp.Transform(), cmp.AllowUnexported(want)); diff != "" {
		t.Fatalf("restored state differs (-want +got):\n%s", diff)
	}
	// The restored FSM keeps working: the lookup indexes were rebuilt.
	ga := &applier{t: t, f: g, index: a.index}
	if err := ga.apply(t0, enrollCmd("h2", "host-b")); err != nil {
		t.Fatalf("enrol after restore: %v", err)
	}
	if err := ga.apply(t0, enrollCmd("h1", "host-c")); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("reuse after restore: err = %v, want ErrTokenUsed", err)
	}
	g.Read(func(s *State) {
		if _, ok := s.APITokenByHash("aa"); !ok {
			t.Error("api token hash index not rebuilt")
		}
	})
}

func TestSnapshot_RejectsBadStreams(t *testing.T) {
	good := snapshotBytes(t, populated(t).f)
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-3],
		"garbage":   []byte("not a snapshot at all"),
		"no header": func() []byte {
			var b bytes.Buffer
			_ = WriteRecords(&b, []*palisadev1.SnapshotRecord{{Record: &palisadev1.SnapshotRecord_Host{Host: &palisadev1.Host{Id: "x"}}}})
			return b.Bytes()
		}(),
		"future format": func() []byte {
			var b bytes.Buffer
			_ = WriteRecords(&b, []*palisadev1.SnapshotRecord{{Record: &palisadev1.SnapshotRecord_Header{Header: &palisadev1.SnapshotHeader{Format: 99}}}})
			return b.Bytes()
		}(),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			f := populated(t).f
			before := snapshotBytes(t, f)
			if err := f.Restore(nopCloser{bytes.NewReader(data)}); err == nil {
				t.Fatal("restore succeeded, want an error")
			}
			if !bytes.Equal(stripHeader(t, before), stripHeader(t, snapshotBytes(t, f))) {
				t.Fatal("a failed restore changed the state")
			}
		})
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func FuzzReadSnapshot(f *testing.F) {
	f.Add([]byte{})
	var b bytes.Buffer
	_ = WriteRecords(&b, []*palisadev1.SnapshotRecord{
		{Record: &palisadev1.SnapshotRecord_Header{Header: &palisadev1.SnapshotHeader{Format: snapshotFormat}}},
		{Record: &palisadev1.SnapshotRecord_Host{Host: &palisadev1.Host{Id: "x", Nkey: "U"}}},
	})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decoded must snapshot again without error.
		fs := &FSM{state: s}
		snap, err := fs.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteRecords(&buf, snap.(*snapshot).records); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzApply(f *testing.F) {
	for _, c := range []*palisadev1.FSMCommand{initCmd(), enrollTokenCmd("et", "h", t0), enrollCmd("h", "x")} {
		b, _ := proto.Marshal(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := New(nil)
		for i := uint64(1); i <= 3; i++ {
			_ = fs.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: data})
		}
	})
}

func withTime(c *palisadev1.FSMCommand) *palisadev1.FSMCommand {
	c.Time = timestamppb.New(t0)
	c.Actor = "test"
	return c
}

func raftLog(i uint64, data []byte) *raft.Log {
	return &raft.Log{Index: i, Type: raft.LogCommand, Data: data}
}
