package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/controllertest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func open(t *testing.T, dir, addr string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Config{NodeID: "n1", DataDir: dir, RaftAddr: addr, Bootstrap: true,
		Logger: controllertest.Logger(), SnapshotThreshold: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 30*time.Second, "leadership", s.IsLeader)
	return s
}

func tokenCmd(i int) *palisadev1.FSMCommand {
	return &palisadev1.FSMCommand{Time: timestamppb.Now(), Actor: "test",
		Cmd: &palisadev1.FSMCommand_CreateApiToken{CreateApiToken: &palisadev1.CreateAPITokenCmd{
			Token: &palisadev1.APIToken{Id: fmt.Sprintf("tok-%d", i), Sha256: fmt.Sprintf("hash-%d", i), Role: palisadev1.Role_ROLE_VIEWER}}}}
}

func count(s *store.Store) (n int) {
	s.FSM().Read(func(st *fsm.State) { n = len(st.APITokens()) })
	return n
}

func TestSingleNode_StateSurvivesRestart(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%t", withSnapshot), func(t *testing.T) {
			dir, addr := t.TempDir(), controllertest.FreeAddr(t)
			s := open(t, dir, addr)
			ctx := context.Background()
			for i := range 50 {
				if _, err := s.Apply(ctx, tokenCmd(i)); err != nil {
					t.Fatalf("apply %d: %v", i, err)
				}
			}
			// A state error is returned and changes nothing.
			if _, err := s.Apply(ctx, tokenCmd(3)); !errors.Is(err, fsm.ErrExists) {
				t.Fatalf("duplicate: err = %v, want ErrExists", err)
			}
			if withSnapshot {
				if err := s.Snapshot(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Apply(ctx, tokenCmd(50)); err != nil {
					t.Fatal(err)
				}
			}
			want := count(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s2 := open(t, dir, addr)
			defer s2.Close()
			if err := s2.Barrier(ctx); err != nil {
				t.Fatal(err)
			}
			if got := count(s2); got != want {
				t.Fatalf("after restart: %d tokens, want %d", got, want)
			}
		})
	}
}

func TestApply_OnlyOnLeader(t *testing.T) {
	// A node that never bootstrapped has no leader and must refuse writes.
	s, err := store.Open(store.Config{NodeID: "lonely", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Apply(context.Background(), tokenCmd(1)); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("err = %v, want ErrNotLeader", err)
	}
}
