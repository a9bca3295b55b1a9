package ingest

import (
	"encoding/json"
	"sort"
)

// maxRanges bounds the out-of-order ranges kept per host. Past it, the
// watermark jumps to the oldest range: sequence numbers skipped that way
// are ones the host lost (its spool bound) and will never arrive.
const maxRanges = 4096

// progress is what has been ingested from one host: every sequence number
// up to Watermark, plus ranges above it (records can be redelivered out of
// order: a record left unacknowledged by a stopped leader comes back only
// after the ack wait, when later records were already taken).
type progress struct {
	Watermark uint64      `json:"w"`
	Ranges    [][2]uint64 `json:"r,omitempty"` // sorted, disjoint, all above Watermark+1
}

// seen reports whether [first,last] was already ingested.
func (p *progress) seen(first, last uint64) bool {
	if last <= p.Watermark {
		return true
	}
	i := sort.Search(len(p.Ranges), func(i int) bool { return p.Ranges[i][1] >= first })
	return i < len(p.Ranges) && p.Ranges[i][0] <= first && last <= p.Ranges[i][1]
}

// add records [first,last] and returns how many sequence numbers were
// given up as lost to keep the ranges bounded.
func (p *progress) add(first, last uint64) (skipped uint64) {
	p.Ranges = append(p.Ranges, [2]uint64{first, last})
	sort.Slice(p.Ranges, func(i, j int) bool { return p.Ranges[i][0] < p.Ranges[j][0] })
	merged := p.Ranges[:0]
	for _, r := range p.Ranges {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	p.Ranges = merged
	for len(p.Ranges) > 0 && (p.Ranges[0][0] <= p.Watermark+1 || len(p.Ranges) > maxRanges) {
		r := p.Ranges[0]
		if r[0] > p.Watermark+1 {
			skipped += r[0] - p.Watermark - 1
		}
		p.Watermark = max(p.Watermark, r[1])
		p.Ranges = p.Ranges[1:]
	}
	return skipped
}

func (p *progress) encode() []byte {
	b, _ := json.Marshal(p)
	return b
}

func decodeProgress(b []byte) (*progress, error) {
	var p progress
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	sort.Slice(p.Ranges, func(i, j int) bool { return p.Ranges[i][0] < p.Ranges[j][0] })
	return &p, nil
}
