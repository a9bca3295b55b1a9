package fsm

import (
	"sort"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// APIToken returns one API token by id.
func (s *State) APIToken(id string) (*palisadev1.APIToken, bool) { return cloneOK(s.apiTokens, id) }

// Policy returns one policy version.
func (s *State) Policy(version uint64) (*palisadev1.PolicyVersion, bool) {
	p, ok := s.policies[version]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(p), true
}

// CurrentPolicy returns the newest policy version, or nil when none was
// applied.
func (s *State) CurrentPolicy() *palisadev1.PolicyVersion {
	p, _ := s.Policy(s.latestPolicy)
	return p
}

// Policies returns every policy version, newest first, without their
// sources.
func (s *State) Policies() []*palisadev1.PolicyVersion {
	out := make([]*palisadev1.PolicyVersion, 0, len(s.policies))
	for v := s.latestPolicy; v > 0; v-- {
		if p, ok := s.policies[v]; ok {
			c := proto.CloneOf(p)
			c.Source = nil
			out = append(out, c)
		}
	}
	return out
}

// Incident returns one incident.
func (s *State) Incident(id string) (*palisadev1.Incident, bool) { return cloneOK(s.incidents, id) }

// Incidents returns the incidents that keep returns true for, newest
// first, at most limit (0: all).
func (s *State) Incidents(keep func(*palisadev1.Incident) bool, limit int) []*palisadev1.Incident {
	return newestFirst(s.incidentOrder, s.incidents, keep, limit)
}

// Action returns one action.
func (s *State) Action(id string) (*palisadev1.Action, bool) { return cloneOK(s.actions, id) }

// Actions returns the actions that keep returns true for, newest first,
// at most limit (0: all).
func (s *State) Actions(keep func(*palisadev1.Action) bool, limit int) []*palisadev1.Action {
	return newestFirst(s.actionOrder, s.actions, keep, limit)
}

// IOC returns one IOC.
func (s *State) IOC(id string) (*palisadev1.IOC, bool) { return cloneOK(s.iocs, id) }

// IOCs returns every IOC, sorted by id.
func (s *State) IOCs() []*palisadev1.IOC { return sortedClones(s.iocs) }

// LeakedCredential returns one leaked credential.
func (s *State) LeakedCredential(id string) (*palisadev1.LeakedCredential, bool) {
	return cloneOK(s.leaks, id)
}

// LeakedCredentials returns every leaked credential, sorted by id.
func (s *State) LeakedCredentials() []*palisadev1.LeakedCredential { return sortedClones(s.leaks) }

// Node returns one controller node.
func (s *State) Node(id string) (*palisadev1.Node, bool) { return cloneOK(s.nodes, id) }

// Nodes returns every registered controller node, sorted by id.
func (s *State) Nodes() []*palisadev1.Node { return sortedClones(s.nodes) }

// Idempotency returns the record of a key, if it is still kept.
func (s *State) Idempotency(key string) (*palisadev1.IdempotencyRecord, bool) {
	return cloneOK(s.idem, key)
}

// IdempotencyCount is how many idempotency records are kept.
func (s *State) IdempotencyCount() int { return len(s.idem) }

// AuditFilter returns audit entries with index > after that keep accepts,
// oldest first, at most limit (0: all).
func (s *State) AuditFilter(after uint64, limit int, keep func(*palisadev1.AuditEntry) bool) []*palisadev1.AuditEntry {
	i := sort.Search(len(s.audit), func(i int) bool { return s.audit[i].GetIndex() > after })
	var out []*palisadev1.AuditEntry
	for ; i < len(s.audit) && (limit == 0 || len(out) < limit); i++ {
		if keep == nil || keep(s.audit[i]) {
			out = append(out, proto.CloneOf(s.audit[i]))
		}
	}
	return out
}

// AuditLen is the number of audit entries.
func (s *State) AuditLen() int { return len(s.audit) }

func cloneOK[T proto.Message](m map[string]T, id string) (T, bool) {
	v, ok := m[id]
	if !ok {
		var zero T
		return zero, false
	}
	return proto.CloneOf(v), true
}

func newestFirst[T proto.Message](order []string, m map[string]T, keep func(T) bool, limit int) []T {
	var out []T
	for i := len(order) - 1; i >= 0 && (limit == 0 || len(out) < limit); i-- {
		v := m[order[i]]
		if keep == nil || keep(v) {
			out = append(out, proto.CloneOf(v))
		}
	}
	return out
}
