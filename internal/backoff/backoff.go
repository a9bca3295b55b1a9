// Package backoff spaces out retries: exponential growth with full jitter,
// so a fleet of agents that lost the same server does not come back in
// lock step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields retry delays between Min and Max.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next delay: uniformly random up to the current bound,
// which doubles each call until Max.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	return b.Min/2 + rand.N(b.cur-b.Min/2+1)
}

// Reset starts again from Min (after a success).
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps for Next() or until ctx ends; it reports whether ctx is
// still live.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
