package backoff

import (
	"testing"
	"time"
)

func TestBackoff_GrowsWithinBoundsAndResets(t *testing.T) {
	b := &Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for i := 0; i < 50; i++ {
		d := b.Next()
		if d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("delay %d = %s, outside [Min/2, Max]", i, d)
		}
	}
	if b.cur != 2*time.Second {
		t.Fatalf("bound = %s, want Max after many calls", b.cur)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %s, want at most Min", d)
	}
}
