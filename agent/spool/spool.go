// Package spool is the agent's write-ahead queue for telemetry. Every
// record (a batch of events, alerts or command results) is numbered and
// written to disk before it is sent; the sender removes it only after
// JetStream acknowledged it. So nothing is lost while NATS or the
// controller is unreachable, or when the agent restarts, and sequence
// numbers keep increasing across restarts.
//
// Layout: DIR/<20-digit segment id>.seg files of records, and DIR/cursor
// (JSON: the first unacknowledged position, the last acknowledged
// sequence number and the count of items lost to the size bound). A record
// is [u32 length][u32 crc32c][payload], payload = [u8 kind length][kind]
// [u64 first seq][u32 count][data]. A torn record at the end of the last
// segment (a crash mid-write) is cut off at open.
//
// The spool is bounded (MaxBytes). When a new record would exceed it, the
// oldest whole segments are dropped and the items in them that were not
// yet acknowledged are counted as lost — reported, never silent.
package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/palisade-sec/palisade/internal/fileutil"
)

// Defaults.
const (
	DefaultMaxBytes     = 256 << 20
	DefaultSegmentBytes = 8 << 20
	maxRecord           = 16 << 20
	cursorFile          = "cursor"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned for a record larger than the spool can hold.
var ErrTooLarge = errors.New("record larger than the spool's bound")

// Record is one spooled item batch.
type Record struct {
	Kind     string // e.g. "events", "alerts", "results": the subject suffix
	FirstSeq uint64 // sequence number of the first item
	Count    uint32 // items in the batch; they hold FirstSeq..FirstSeq+Count-1
	Data     []byte
	pos      position
	end      position
}

// LastSeq is the sequence number of the record's last item.
func (r *Record) LastSeq() uint64 { return r.FirstSeq + uint64(r.Count) - 1 }

type position struct {
	Seg uint64 `json:"seg"`
	Off int64  `json:"off"`
}

type cursor struct {
	Pos      position `json:"pos"`
	AckedSeq uint64   `json:"acked_seq"`
	Lost     uint64   `json:"lost"`
}

type segment struct {
	id       uint64
	size     int64
	items    uint64 // items in records
	firstSeq uint64 // of the first record (0: none)
}

// Options tune a spool.
type Options struct {
	MaxBytes     int64
	SegmentBytes int64
}

// Spool is a bounded on-disk queue. Append and the reader (Next/Ack) may
// run in different goroutines.
type Spool struct {
	dir  string
	opts Options

	mu      sync.Mutex
	segs    []segment // oldest first; the last one is being written
	w       *os.File
	bw      *bufio.Writer
	cur     cursor
	nextSeq uint64
	total   int64
	ready   chan struct{}
}

// Open opens (or creates) the spool in dir.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.SegmentBytes > opts.MaxBytes/2 {
		opts.SegmentBytes = max(opts.MaxBytes/2, 1)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, ready: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", id))
}

func (s *Spool) load() error {
	data, err := os.ReadFile(filepath.Join(s.dir, cursorFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read spool cursor: %w", err)
	default:
		if err := json.Unmarshal(data, &s.cur); err != nil {
			return fmt.Errorf("spool cursor is corrupt: %w", err)
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list spool: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	s.nextSeq = s.cur.AckedSeq + 1
	for i, id := range ids {
		last := i == len(ids)-1
		seg, lastSeq, err := s.scan(id, last)
		if err != nil {
			return err
		}
		if lastSeq >= s.nextSeq {
			s.nextSeq = lastSeq + 1
		}
		if id < s.cur.Pos.Seg {
			// Fully acknowledged but not yet removed (crash before removal).
			_ = os.Remove(s.segPath(id))
			continue
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
	}
	if len(s.segs) == 0 || s.segs[len(s.segs)-1].id < s.cur.Pos.Seg {
		id := s.cur.Pos.Seg
		if len(s.segs) > 0 {
			id = max(id, s.segs[len(s.segs)-1].id+1)
		}
		if id == 0 {
			id = 1
		}
		s.segs = append(s.segs, segment{id: id})
	}
	if s.cur.Pos.Seg < s.segs[0].id {
		s.cur.Pos = position{Seg: s.segs[0].id}
	}
	return s.openWriter()
}

// scan reads a segment's records; for the last segment a torn tail is
// truncated away.
func (s *Spool) scan(id uint64, truncate bool) (segment, uint64, error) {
	f, err := os.OpenFile(s.segPath(id), os.O_RDWR, 0o600)
	if err != nil {
		return segment{}, 0, fmt.Errorf("open segment %d: %w", id, err)
	}
	defer f.Close()
	seg := segment{id: id}
	var lastSeq uint64
	br := bufio.NewReader(f)
	var off int64
	for {
		rec, n, err := readRecord(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !truncate {
				return segment{}, 0, fmt.Errorf("segment %d is corrupt at %d: %w", id, off, err)
			}
			if err := f.Truncate(off); err != nil {
				return segment{}, 0, fmt.Errorf("truncate torn segment %d: %w", id, err)
			}
			break
		}
		if seg.firstSeq == 0 {
			seg.firstSeq = rec.FirstSeq
		}
		seg.items += uint64(rec.Count)
		lastSeq = rec.LastSeq()
		off += n
	}
	seg.size = off
	return seg, lastSeq, nil
}

func (s *Spool) openWriter() error {
	last := &s.segs[len(s.segs)-1]
	f, err := os.OpenFile(s.segPath(last.id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open segment for writing: %w", err)
	}
	s.w = f
	s.bw = bufio.NewWriterSize(f, 64<<10)
	return nil
}

// Append numbers and writes one record. build receives the first sequence
// number to give out and returns the encoded data and how many items
// (numbered consecutively) it holds.
func (s *Spool) Append(kind string, build func(firstSeq uint64) (data []byte, count uint32, err error)) (uint64, error) {
	if len(kind) == 0 || len(kind) > 255 {
		return 0, fmt.Errorf("spool record kind %q: 1-255 bytes", kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.nextSeq
	data, count, err := build(first)
	if err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, errors.New("spool record with no items")
	}
	buf := encodeRecord(kind, first, count, data)
	size := int64(len(buf))
	if size > maxRecord || size > s.opts.MaxBytes/2 {
		return 0, ErrTooLarge
	}
	last := &s.segs[len(s.segs)-1]
	if last.size > 0 && last.size+size > s.opts.SegmentBytes {
		if err := s.rotate(); err != nil {
			return 0, err
		}
		last = &s.segs[len(s.segs)-1]
	}
	for s.total+size > s.opts.MaxBytes && len(s.segs) > 1 {
		if err := s.dropOldest(); err != nil {
			return 0, err
		}
	}
	if _, err := s.bw.Write(buf); err != nil {
		return 0, fmt.Errorf("write spool: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		return 0, fmt.Errorf("flush spool: %w", err)
	}
	if last.firstSeq == 0 {
		last.firstSeq = first
	}
	last.size += size
	last.items += uint64(count)
	s.total += size
	s.nextSeq = first + uint64(count)
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return first, nil
}

func (s *Spool) rotate() error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("flush spool: %w", err)
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("sync spool: %w", err)
	}
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("close segment: %w", err)
	}
	s.segs = append(s.segs, segment{id: s.segs[len(s.segs)-1].id + 1})
	return s.openWriter()
}

// dropOldest removes the oldest segment, counting its unacknowledged
// items as lost.
func (s *Spool) dropOldest() error {
	old := s.segs[0]
	lost := old.items
	if s.cur.Pos.Seg == old.id && s.cur.Pos.Off > 0 {
		// Part of it was acknowledged: count only what was not.
		acked, err := s.itemsBefore(old.id, s.cur.Pos.Off)
		if err != nil {
			return err
		}
		lost -= acked
	} else if s.cur.Pos.Seg > old.id {
		lost = 0
	}
	if err := os.Remove(s.segPath(old.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop segment: %w", err)
	}
	s.segs = s.segs[1:]
	s.total -= old.size
	s.cur.Lost += lost
	// What was dropped is no longer pending: AckedSeq means "done".
	done := s.nextSeq - 1
	if next := s.segs[0].firstSeq; next > 0 {
		done = next - 1
	}
	s.cur.AckedSeq = max(s.cur.AckedSeq, done)
	if s.cur.Pos.Seg <= old.id {
		s.cur.Pos = position{Seg: s.segs[0].id}
	}
	return s.saveCursor()
}

func (s *Spool) itemsBefore(id uint64, off int64) (uint64, error) {
	f, err := os.Open(s.segPath(id))
	if err != nil {
		return 0, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(io.LimitReader(f, off))
	var n uint64
	for {
		rec, _, err := readRecord(br)
		if err != nil {
			return n, nil
		}
		n += uint64(rec.Count)
	}
}

func (s *Spool) saveCursor() error {
	data, err := json.Marshal(s.cur)
	if err != nil {
		return fmt.Errorf("encode cursor: %w", err)
	}
	return fileutil.WriteAtomic(filepath.Join(s.dir, cursorFile), data, 0o600)
}

// Next returns the oldest unacknowledged record, or nil when none.
func (s *Spool) Next() (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		pos := s.cur.Pos
		segIdx := -1
		for i, sg := range s.segs {
			if sg.id == pos.Seg {
				segIdx = i
				break
			}
		}
		if segIdx < 0 {
			return nil, fmt.Errorf("spool cursor at missing segment %d", pos.Seg)
		}
		if pos.Off < s.segs[segIdx].size {
			rec, err := s.readAt(pos)
			if err != nil {
				return nil, err
			}
			return rec, nil
		}
		if segIdx == len(s.segs)-1 {
			return nil, nil
		}
		// Finished segment: move on and remove it.
		s.cur.Pos = position{Seg: s.segs[segIdx+1].id}
		if err := os.Remove(s.segPath(pos.Seg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove sent segment: %w", err)
		}
		s.total -= s.segs[segIdx].size
		s.segs = append(s.segs[:segIdx], s.segs[segIdx+1:]...)
		if err := s.saveCursor(); err != nil {
			return nil, err
		}
	}
}

func (s *Spool) readAt(pos position) (*Record, error) {
	f, err := os.Open(s.segPath(pos.Seg))
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(pos.Off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek segment: %w", err)
	}
	rec, n, err := readRecord(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read spool record at %d/%d: %w", pos.Seg, pos.Off, err)
	}
	rec.pos = pos
	rec.end = position{Seg: pos.Seg, Off: pos.Off + n}
	return rec, nil
}

// Ack marks rec (the record Next returned) as delivered.
func (s *Spool) Ack(rec *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.pos != s.cur.Pos {
		// The record was dropped by the bound meanwhile; nothing to do.
		return nil
	}
	s.cur.Pos = rec.end
	s.cur.AckedSeq = rec.LastSeq()
	return s.saveCursor()
}

// Ready is signalled after each Append.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

// Stats reports the bytes waiting to be sent (including acknowledged
// records in the current segment) and the items ever lost to the bound.
func (s *Spool) Stats() (pendingBytes int64, lost uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.cur.Lost
}

// Pending is the number of items not yet acknowledged (nor lost).
func (s *Spool) Pending() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq - 1 - s.cur.AckedSeq
}

// NextSeq is the sequence number the next item will get.
func (s *Spool) NextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq
}

// Close flushes and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := errors.Join(s.bw.Flush(), s.w.Sync(), s.w.Close(), s.saveCursor())
	s.w = nil
	return err
}

func encodeRecord(kind string, first uint64, count uint32, data []byte) []byte {
	payload := make([]byte, 0, 1+len(kind)+12+len(data))
	payload = append(payload, byte(len(kind)))
	payload = append(payload, kind...)
	payload = binary.BigEndian.AppendUint64(payload, first)
	payload = binary.BigEndian.AppendUint32(payload, count)
	payload = append(payload, data...)
	buf := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[4:8], crc32.Checksum(payload, crcTable))
	return append(buf, payload...)
}

// readRecord decodes one record and returns its encoded size.
func readRecord(r io.Reader) (*Record, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, 0, fmt.Errorf("torn record header: %w", err)
		}
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > maxRecord || n < 14 {
		return nil, 0, fmt.Errorf("record length %d out of range", n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, 0, fmt.Errorf("torn record: %w", io.ErrUnexpectedEOF)
	}
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:8]) {
		return nil, 0, errors.New("record checksum mismatch")
	}
	kl := int(payload[0])
	if 1+kl+12 > len(payload) {
		return nil, 0, errors.New("record kind overruns payload")
	}
	rec := &Record{Kind: string(payload[1 : 1+kl])}
	rest := payload[1+kl:]
	rec.FirstSeq = binary.BigEndian.Uint64(rest[0:8])
	rec.Count = binary.BigEndian.Uint32(rest[8:12])
	rec.Data = rest[12:]
	if rec.Count == 0 {
		return nil, 0, errors.New("record with no items")
	}
	return rec, int64(8 + n), nil
}
