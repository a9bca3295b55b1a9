package ingest

import "testing"

func TestProgress_OutOfOrderAndBounded(t *testing.T) {
	p := &progress{}
	p.add(1, 10)
	p.add(21, 30) // 11..20 still in flight
	if !p.seen(1, 10) || !p.seen(21, 30) || p.seen(11, 20) {
		t.Fatalf("seen wrong: %+v", p)
	}
	if p.Watermark != 10 {
		t.Fatalf("watermark = %d, want 10", p.Watermark)
	}
	p.add(11, 20) // the late record arrives
	if p.Watermark != 30 || len(p.Ranges) != 0 || !p.seen(11, 20) {
		t.Fatalf("after the late record: %+v", p)
	}
	q, err := decodeProgress(p.encode())
	if err != nil || q.Watermark != 30 {
		t.Fatalf("round trip: %+v %v", q, err)
	}
	// A host whose spool lost 31..40 never sends them: past the bound the
	// watermark moves on and counts them.
	var skipped uint64
	for i := uint64(0); i <= maxRanges; i++ {
		first := 41 + 2*i
		skipped += p.add(first, first)
	}
	if skipped == 0 || len(p.Ranges) > maxRanges {
		t.Fatalf("bounded: skipped %d, %d ranges", skipped, len(p.Ranges))
	}
}
