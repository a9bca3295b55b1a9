package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/controller/store"
	"github.com/palisade-sec/palisade/internal/controllertest"
)

// The log is compacted once SnapshotThreshold entries accumulate: a
// snapshot is taken on its own and the log keeps only TrailingLogs
// entries, and the state survives a restart from that snapshot.
func TestCompaction_SnapshotThresholdTruncatesLog(t *testing.T) {
	dir, addr := t.TempDir(), controllertest.FreeAddr(t)
	cfg := store.Config{NodeID: "n1", DataDir: dir, RaftAddr: addr, Bootstrap: true, Logger: controllertest.Logger(),
		SnapshotThreshold: 100, SnapshotInterval: 20 * time.Millisecond, TrailingLogs: 10}
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 30*time.Second, "leadership", s.IsLeader)
	ctx := context.Background()
	for i := range 300 {
		if _, err := s.Apply(ctx, tokenCmd(i)); err != nil {
			t.Fatal(err)
		}
	}
	controllertest.Eventually(t, 30*time.Second, "a snapshot and a truncated log", func() bool {
		st := s.Stats()
		last, _ := strconv.ParseUint(st["last_snapshot_index"], 10, 64)
		return last >= 100
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.SnapshotThreshold = 1 << 20
	s2, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	controllertest.Eventually(t, 30*time.Second, "leadership after restart", s2.IsLeader)
	if err := s2.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(s2); got != 300 {
		t.Fatalf("after restart from the snapshot: %d tokens, want 300", got)
	}
	first, err := store.FirstLogIndex(s2)
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Fatalf("first log index = %d: the log was not truncated", first)
	}
}
