package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func appendN(t *testing.T, s *Spool, kind string, n uint32, size int) uint64 {
	t.Helper()
	first, err := s.Append(kind, func(first uint64) ([]byte, uint32, error) {
		return bytes.Repeat([]byte{byte(first)}, size), n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return first
}

// drain reads and acks everything, returning the sequence numbers seen.
func drain(t *testing.T, s *Spool) []uint64 {
	t.Helper()
	var seqs []uint64
	for {
		rec, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if rec == nil {
			return seqs
		}
		for i := uint32(0); i < rec.Count; i++ {
			seqs = append(seqs, rec.FirstSeq+uint64(i))
		}
		if err := s.Ack(rec); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpool_OrderAcrossRestartsAndSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		appendN(t, s, "events", 3, 1000)
	}
	// Read part, ack part; the rest must come back after a restart.
	got := []uint64{}
	for i := 0; i < 7; i++ {
		rec, err := s.Next()
		if err != nil || rec == nil {
			t.Fatalf("next: %v %v", rec, err)
		}
		for j := uint32(0); j < rec.Count; j++ {
			got = append(got, rec.FirstSeq+uint64(j))
		}
		if err := s.Ack(rec); err != nil {
			t.Fatal(err)
		}
	}
	// One read but not acked: it must be redelivered.
	if rec, _ := s.Next(); rec == nil || rec.FirstSeq != 22 {
		t.Fatalf("8th record = %+v, want first seq 22", rec)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.NextSeq() != 61 {
		t.Fatalf("next seq after restart = %d, want 61", s2.NextSeq())
	}
	appendN(t, s2, "alerts", 1, 10)
	got = append(got, drain(t, s2)...)
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("seq[%d] = %d: want 1..61 in order, exactly once (%v)", i, seq, got)
		}
	}
	if len(got) != 61 {
		t.Fatalf("got %d items, want 61", len(got))
	}
	// Sent segments are removed.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("%d segment files left, want only the one being written", len(segs))
	}
	// Numbering continues after a full drain and restart.
	s2.Close()
	s3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if s3.NextSeq() != 62 {
		t.Fatalf("next seq after drain+restart = %d, want 62", s3.NextSeq())
	}
}

func TestSpool_TornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{})
	appendN(t, s, "events", 2, 100)
	appendN(t, s, "events", 2, 100)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, _ := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 1, 0, 9, 9}) // half a header
	f.Close()
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	appendN(t, s2, "events", 1, 10)
	if got := drain(t, s2); len(got) != 5 || got[4] != 5 {
		t.Fatalf("after a torn tail: %v, want 1..5", got)
	}
}

func TestSpool_BoundCountsLoss(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxBytes: 16 << 10, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 100; i++ {
		appendN(t, s, "events", 10, 1000) // ~1 KiB per record, 100 KiB in all
	}
	pending, lost := s.Stats()
	if pending > 16<<10 {
		t.Fatalf("spool holds %d bytes, bound is %d", pending, 16<<10)
	}
	if p := s.Pending(); uint64(p)+lost != 1000 {
		t.Fatalf("pending %d + lost %d, want 1000", p, lost)
	}
	got := drain(t, s)
	if s.Pending() != 0 {
		t.Fatalf("pending after drain = %d", s.Pending())
	}
	if lost == 0 || uint64(len(got))+lost != 1000 {
		t.Fatalf("delivered %d + lost %d, want 1000 in all with some lost", len(got), lost)
	}
	// What is delivered is the newest, in order.
	if got[len(got)-1] != 1000 {
		t.Fatalf("last delivered = %d, want 1000", got[len(got)-1])
	}
	if _, err := s.Append("events", func(uint64) ([]byte, uint32, error) { return make([]byte, 16<<10), 1, nil }); err != ErrTooLarge {
		t.Fatalf("oversized record: err = %v, want ErrTooLarge", err)
	}
}

func TestSpool_RejectsBadRecords(t *testing.T) {
	s, _ := Open(t.TempDir(), Options{})
	defer s.Close()
	if _, err := s.Append("", func(uint64) ([]byte, uint32, error) { return nil, 1, nil }); err == nil {
		t.Error("empty kind accepted")
	}
	if _, err := s.Append("x", func(uint64) ([]byte, uint32, error) { return nil, 0, nil }); err == nil {
		t.Error("record with no items accepted")
	}
	if _, err := s.Append("x", func(uint64) ([]byte, uint32, error) { return nil, 0, fmt.Errorf("boom") }); err == nil {
		t.Error("builder error swallowed")
	}
	if s.NextSeq() != 1 {
		t.Errorf("refused appends consumed sequence numbers: next = %d", s.NextSeq())
	}
}

func FuzzReadRecord(f *testing.F) {
	f.Add(encodeRecord("events", 1, 2, []byte("hello")))
	f.Add([]byte{0, 0, 0, 20, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, n, err := readRecord(bytes.NewReader(data))
		if err != nil {
			return
		}
		if n > int64(len(data)) || rec.Count == 0 {
			t.Fatalf("decoded %d bytes of %d, count %d", n, len(data), rec.Count)
		}
		again := encodeRecord(rec.Kind, rec.FirstSeq, rec.Count, rec.Data)
		if !bytes.Equal(again, data[:n]) {
			t.Fatal("re-encoding differs")
		}
	})
}
