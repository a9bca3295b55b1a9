package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// snapshotFormat is bumped when the record stream changes incompatibly.
const snapshotFormat = 1

// maxRecordSize bounds one snapshot record (a host, a token, ...).
const maxRecordSize = 16 << 20

// Snapshot implements raft.FSM. It copies the state under the read lock;
// Persist then writes the copy without holding any lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.state
	recs := make([]*palisadev1.SnapshotRecord, 0, 1+len(s.apiTokens)+len(s.enrollTokens)+len(s.hosts)+len(s.audit))
	recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Header{
		Header: &palisadev1.SnapshotHeader{Format: snapshotFormat, LastIndex: s.lastIndex, Time: timestamppb.Now()}}})
	if s.cluster != nil {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Cluster{Cluster: proto.CloneOf(s.cluster)}})
	}
	for _, t := range sortedClones(s.apiTokens) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_ApiToken{ApiToken: t}})
	}
	for _, t := range sortedClones(s.enrollTokens) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_EnrollToken{EnrollToken: t}})
	}
	for _, h := range sortedClones(s.hosts) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Host{Host: h}})
	}
	for _, a := range s.audit {
		// Audit entries are never mutated after append: sharing is safe.
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Audit{Audit: a}})
	}
	return &snapshot{records: recs}, nil
}

type snapshot struct {
	records []*palisadev1.SnapshotRecord
}

// Persist writes the records; any error cancels the sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteRecords(sink, s.records); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// WriteRecords writes records as a length-delimited stream.
func WriteRecords(w io.Writer, records []*palisadev1.SnapshotRecord) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	for _, r := range records {
		if _, err := protodelim.MarshalTo(bw, r); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Restore implements raft.FSM: it decodes the whole snapshot into fresh
// state and swaps it in only if every record decoded.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.state = s
	fn := f.onChange
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
	return nil
}

// ReadSnapshot decodes a snapshot stream into a new State.
func ReadSnapshot(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	s := newState()
	first := true
	for {
		var rec palisadev1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			if first {
				return nil, errors.New("empty snapshot: no header")
			}
			return s, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode record: %w", err)
		}
		if first {
			h := rec.GetHeader()
			if h == nil {
				return nil, errors.New("snapshot does not start with a header")
			}
			if h.GetFormat() != snapshotFormat {
				return nil, fmt.Errorf("snapshot format %d, want %d", h.GetFormat(), snapshotFormat)
			}
			s.lastIndex = h.GetLastIndex()
			first = false
			continue
		}
		switch r := rec.GetRecord().(type) {
		case *palisadev1.SnapshotRecord_Cluster:
			s.cluster = r.Cluster
		case *palisadev1.SnapshotRecord_ApiToken:
			s.apiTokens[r.ApiToken.GetId()] = r.ApiToken
			s.apiByHash[r.ApiToken.GetSha256()] = r.ApiToken.GetId()
		case *palisadev1.SnapshotRecord_EnrollToken:
			s.enrollTokens[r.EnrollToken.GetId()] = r.EnrollToken
			s.enrollByHash[r.EnrollToken.GetSha256()] = r.EnrollToken.GetId()
		case *palisadev1.SnapshotRecord_Host:
			s.hosts[r.Host.GetId()] = r.Host
		case *palisadev1.SnapshotRecord_Audit:
			s.audit = append(s.audit, r.Audit)
		case *palisadev1.SnapshotRecord_Header:
			return nil, errors.New("second header in snapshot")
		default:
			// A record type from a newer version: skipped, like an unknown
			// command with ignore_if_unknown.
		}
	}
}
