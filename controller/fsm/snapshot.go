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
	recs := make([]*palisadev1.SnapshotRecord, 0, 1+len(s.apiTokens)+len(s.enrollTokens)+len(s.hosts)+len(s.audit)+
		len(s.policies)+len(s.incidents)+len(s.actions)+len(s.iocs)+len(s.leaks)+len(s.nodes)+len(s.idem))
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
	for v := uint64(1); v <= s.latestPolicy; v++ {
		if p, ok := s.policies[v]; ok {
			recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Policy{Policy: proto.CloneOf(p)}})
		}
	}
	// Incidents, actions and idempotency records keep their log order.
	for _, id := range s.incidentOrder {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Incident{Incident: proto.CloneOf(s.incidents[id])}})
	}
	for _, id := range s.actionOrder {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Action{Action: proto.CloneOf(s.actions[id])}})
	}
	for _, i := range sortedClones(s.iocs) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Ioc{Ioc: i}})
	}
	for _, l := range sortedClones(s.leaks) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_LeakedCredential{LeakedCredential: l}})
	}
	for _, n := range sortedClones(s.nodes) {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Node{Node: n}})
	}
	for _, k := range s.idemOrder {
		recs = append(recs, &palisadev1.SnapshotRecord{Record: &palisadev1.SnapshotRecord_Idempotency{Idempotency: proto.CloneOf(s.idem[k])}})
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
	// Deterministic: map fields (labels) in key order, so equal states
	// give equal snapshots.
	opts := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	for _, r := range records {
		if _, err := opts.MarshalTo(bw, r); err != nil {
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
		case *palisadev1.SnapshotRecord_Policy:
			v := r.Policy.GetVersion()
			if v == 0 || r.Policy.GetBundle() == nil {
				return nil, errors.New("policy record without version or bundle")
			}
			s.policies[v] = r.Policy
			s.latestPolicy = max(s.latestPolicy, v)
		case *palisadev1.SnapshotRecord_Incident:
			if _, dup := s.incidents[r.Incident.GetId()]; !dup {
				s.incidentOrder = append(s.incidentOrder, r.Incident.GetId())
			}
			s.incidents[r.Incident.GetId()] = r.Incident
		case *palisadev1.SnapshotRecord_Action:
			if _, dup := s.actions[r.Action.GetId()]; !dup {
				s.actionOrder = append(s.actionOrder, r.Action.GetId())
			}
			s.actions[r.Action.GetId()] = r.Action
		case *palisadev1.SnapshotRecord_Ioc:
			s.iocs[r.Ioc.GetId()] = r.Ioc
			s.iocByValue[iocKey(r.Ioc.GetType(), r.Ioc.GetValue())] = r.Ioc.GetId()
		case *palisadev1.SnapshotRecord_LeakedCredential:
			s.leaks[r.LeakedCredential.GetId()] = r.LeakedCredential
			s.leakByHash[r.LeakedCredential.GetKeyIdSha256()] = r.LeakedCredential.GetId()
		case *palisadev1.SnapshotRecord_Node:
			s.nodes[r.Node.GetId()] = r.Node
		case *palisadev1.SnapshotRecord_Idempotency:
			if _, dup := s.idem[r.Idempotency.GetKey()]; !dup {
				s.idemOrder = append(s.idemOrder, r.Idempotency.GetKey())
			}
			s.idem[r.Idempotency.GetKey()] = r.Idempotency
		case *palisadev1.SnapshotRecord_Header:
			return nil, errors.New("second header in snapshot")
		default:
			// A record type from a newer version: skipped, like an unknown
			// command with ignore_if_unknown.
		}
	}
}
