package fsm

import (
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// State is the replicated state. Handlers mutate it under the FSM's lock;
// readers reach it only through FSM.Read and get clones from its accessors.
type State struct {
	lastIndex    uint64
	cluster      *palisadev1.ClusterInfo
	apiTokens    map[string]*palisadev1.APIToken // by id
	apiByHash    map[string]string               // sha256 -> id
	enrollTokens map[string]*palisadev1.EnrollToken
	enrollByHash map[string]string
	hosts        map[string]*palisadev1.Host
	audit        []*palisadev1.AuditEntry

	policies      map[uint64]*palisadev1.PolicyVersion
	latestPolicy  uint64
	incidents     map[string]*palisadev1.Incident
	incidentOrder []string // ids in creation (log) order
	actions       map[string]*palisadev1.Action
	actionOrder   []string
	iocs          map[string]*palisadev1.IOC
	iocByValue    map[string]string // type/value -> id
	leaks         map[string]*palisadev1.LeakedCredential
	leakByHash    map[string]string
	nodes         map[string]*palisadev1.Node
	idem          map[string]*palisadev1.IdempotencyRecord
	idemOrder     []string // keys in insertion (log) order
}

func newState() *State {
	return &State{
		apiTokens:    map[string]*palisadev1.APIToken{},
		apiByHash:    map[string]string{},
		enrollTokens: map[string]*palisadev1.EnrollToken{},
		enrollByHash: map[string]string{},
		hosts:        map[string]*palisadev1.Host{},
		policies:     map[uint64]*palisadev1.PolicyVersion{},
		incidents:    map[string]*palisadev1.Incident{},
		actions:      map[string]*palisadev1.Action{},
		iocs:         map[string]*palisadev1.IOC{},
		iocByValue:   map[string]string{},
		leaks:        map[string]*palisadev1.LeakedCredential{},
		leakByHash:   map[string]string{},
		nodes:        map[string]*palisadev1.Node{},
		idem:         map[string]*palisadev1.IdempotencyRecord{},
	}
}

// LastIndex is the Raft index of the last applied command.
func (s *State) LastIndex() uint64 { return s.lastIndex }

// Cluster returns the cluster's identity, or nil before bootstrap.
func (s *State) Cluster() *palisadev1.ClusterInfo {
	if s.cluster == nil {
		return nil
	}
	return proto.CloneOf(s.cluster)
}

// APITokenByHash returns the token whose secret hashes to sum.
func (s *State) APITokenByHash(sum string) (*palisadev1.APIToken, bool) {
	id, ok := s.apiByHash[sum]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(s.apiTokens[id]), true
}

// APITokens returns every API token, sorted by id.
func (s *State) APITokens() []*palisadev1.APIToken { return sortedClones(s.apiTokens) }

// EnrollTokens returns every enrolment token, sorted by id.
func (s *State) EnrollTokens() []*palisadev1.EnrollToken { return sortedClones(s.enrollTokens) }

// Host returns one host.
func (s *State) Host(id string) (*palisadev1.Host, bool) {
	h, ok := s.hosts[id]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(h), true
}

// Hosts returns every host, sorted by id.
func (s *State) Hosts() []*palisadev1.Host { return sortedClones(s.hosts) }

// Audit returns the audit entries with index > after, oldest first, at most
// limit of them (0: all).
func (s *State) Audit(after uint64, limit int) []*palisadev1.AuditEntry {
	i := sort.Search(len(s.audit), func(i int) bool { return s.audit[i].GetIndex() > after })
	var out []*palisadev1.AuditEntry
	for ; i < len(s.audit) && (limit == 0 || len(out) < limit); i++ {
		out = append(out, proto.CloneOf(s.audit[i]))
	}
	return out
}

func sortedClones[T proto.Message](m map[string]T) []T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, proto.CloneOf(m[k]))
	}
	return out
}

// outcome is what applying one command produced.
type outcome struct {
	// resultID is the id of what the command created or changed (the
	// command's result_id, or the remembered one on a replay).
	resultID string
	// replayedIndex is set when an idempotency key matched: the command
	// was not applied again, and this is the index it was applied at.
	replayedIndex uint64
}

// apply dispatches one command. A handler either changes state and
// returns nil, or returns an error and changes nothing. A command with an
// idempotency key that was already applied is answered from the record
// and changes nothing (not even the audit log).
func apply(s *State, index uint64, cmd *palisadev1.FSMCommand) (outcome, error) {
	key := cmd.GetIdempotencyKey()
	if key != "" {
		pruneIdempotency(s, cmd.GetTime().AsTime())
		if rec, ok := s.idem[key]; ok {
			if rec.GetFingerprint() != cmd.GetIdempotencyFingerprint() {
				return outcome{}, ErrIdempotencyMismatch
			}
			return outcome{resultID: rec.GetResultId(), replayedIndex: rec.GetIndex()}, nil
		}
	}
	var (
		err   error
		audit *palisadev1.AuditEntry
	)
	switch c := cmd.GetCmd().(type) {
	case *palisadev1.FSMCommand_InitCluster:
		audit, err = applyInitCluster(s, c.InitCluster)
	case *palisadev1.FSMCommand_CreateApiToken:
		audit, err = applyCreateAPIToken(s, c.CreateApiToken)
	case *palisadev1.FSMCommand_CreateEnrollToken:
		audit, err = applyCreateEnrollToken(s, c.CreateEnrollToken)
	case *palisadev1.FSMCommand_EnrollHost:
		audit, err = applyEnrollHost(s, cmd, c.EnrollHost)
	case *palisadev1.FSMCommand_SetHostLabels:
		audit, err = applySetHostLabels(s, c.SetHostLabels)
	case *palisadev1.FSMCommand_RequestQuarantine:
		audit, err = applyRequestQuarantine(s, cmd, c.RequestQuarantine)
	case *palisadev1.FSMCommand_CreateAction:
		audit, err = applyCreateAction(s, cmd, c.CreateAction)
	case *palisadev1.FSMCommand_UpdateAction:
		audit, err = applyUpdateAction(s, cmd, c.UpdateAction)
	case *palisadev1.FSMCommand_ApplyPolicy:
		audit, err = applyApplyPolicy(s, cmd, c.ApplyPolicy)
	case *palisadev1.FSMCommand_RollbackPolicy:
		audit, err = applyRollbackPolicy(s, cmd, c.RollbackPolicy)
	case *palisadev1.FSMCommand_CreateIncident:
		audit, err = applyCreateIncident(s, cmd, c.CreateIncident)
	case *palisadev1.FSMCommand_UpdateIncident:
		audit, err = applyUpdateIncident(s, cmd, c.UpdateIncident)
	case *palisadev1.FSMCommand_AddIoc:
		audit, err = applyAddIOC(s, cmd, c.AddIoc)
	case *palisadev1.FSMCommand_RemoveIoc:
		audit, err = applyRemoveIOC(s, c.RemoveIoc)
	case *palisadev1.FSMCommand_AddLeakedCredential:
		audit, err = applyAddLeak(s, cmd, c.AddLeakedCredential)
	case *palisadev1.FSMCommand_UpdateLeakedCredential:
		audit, err = applyUpdateLeak(s, cmd, c.UpdateLeakedCredential)
	case *palisadev1.FSMCommand_RevokeApiToken:
		audit, err = applyRevokeAPIToken(s, cmd, c.RevokeApiToken)
	case *palisadev1.FSMCommand_RegisterNode:
		audit, err = applyRegisterNode(s, cmd, c.RegisterNode)
	case *palisadev1.FSMCommand_RemoveNode:
		audit, err = applyRemoveNode(s, c.RemoveNode)
	default:
		return outcome{}, ErrUnknownCmd
	}
	if err != nil {
		return outcome{}, err
	}
	if audit != nil {
		audit.Index = index
		audit.Time = cmd.GetTime()
		audit.Actor = cmd.GetActor()
		audit.RequestId = cmd.GetRequestId()
		s.audit = append(s.audit, audit)
	}
	resultID := cmd.GetResultId()
	switch cmd.GetCmd().(type) {
	case *palisadev1.FSMCommand_ApplyPolicy, *palisadev1.FSMCommand_RollbackPolicy:
		// The version is assigned here, not by the proposer.
		resultID = strconv.FormatUint(s.latestPolicy, 10)
	}
	if key != "" {
		rememberIdempotency(s, &palisadev1.IdempotencyRecord{
			Key: key, Fingerprint: cmd.GetIdempotencyFingerprint(), Index: index, ResultId: resultID,
			ExpiresAt: timestamppb.New(cmd.GetTime().AsTime().Add(IdempotencyTTL)),
		})
	}
	return outcome{resultID: resultID}, nil
}

func applyInitCluster(s *State, c *palisadev1.InitClusterCmd) (*palisadev1.AuditEntry, error) {
	if s.cluster != nil {
		return nil, ErrAlreadyInited
	}
	if c.GetInfo().GetClusterId() == "" {
		return nil, fmt.Errorf("init cluster: empty cluster id")
	}
	s.cluster = proto.CloneOf(c.GetInfo())
	return &palisadev1.AuditEntry{Action: "cluster.init", Target: c.GetInfo().GetClusterId()}, nil
}

func applyCreateAPIToken(s *State, c *palisadev1.CreateAPITokenCmd) (*palisadev1.AuditEntry, error) {
	t := c.GetToken()
	if t.GetId() == "" || t.GetSha256() == "" {
		return nil, fmt.Errorf("create api token: id and hash are required")
	}
	if _, ok := s.apiTokens[t.GetId()]; ok {
		return nil, fmt.Errorf("api token %s: %w", t.GetId(), ErrExists)
	}
	if _, ok := s.apiByHash[t.GetSha256()]; ok {
		return nil, fmt.Errorf("api token hash: %w", ErrExists)
	}
	s.apiTokens[t.GetId()] = proto.CloneOf(t)
	s.apiByHash[t.GetSha256()] = t.GetId()
	return &palisadev1.AuditEntry{Action: "api_token.create", Target: t.GetId(),
		Detail: fmt.Sprintf("name=%s role=%s", t.GetName(), t.GetRole())}, nil
}

func applyCreateEnrollToken(s *State, c *palisadev1.CreateEnrollTokenCmd) (*palisadev1.AuditEntry, error) {
	t := c.GetToken()
	if t.GetId() == "" || t.GetSha256() == "" {
		return nil, fmt.Errorf("create enrolment token: id and hash are required")
	}
	if _, ok := s.enrollTokens[t.GetId()]; ok {
		return nil, fmt.Errorf("enrolment token %s: %w", t.GetId(), ErrExists)
	}
	if _, ok := s.enrollByHash[t.GetSha256()]; ok {
		return nil, fmt.Errorf("enrolment token hash: %w", ErrExists)
	}
	s.enrollTokens[t.GetId()] = proto.CloneOf(t)
	s.enrollByHash[t.GetSha256()] = t.GetId()
	return &palisadev1.AuditEntry{Action: "enroll_token.create", Target: t.GetId()}, nil
}

func applyEnrollHost(s *State, cmd *palisadev1.FSMCommand, c *palisadev1.EnrollHostCmd) (*palisadev1.AuditEntry, error) {
	id, ok := s.enrollByHash[c.GetTokenSha256()]
	if !ok {
		return nil, ErrTokenInvalid
	}
	tok := s.enrollTokens[id]
	if tok.GetUsedByHost() != "" {
		return nil, ErrTokenUsed
	}
	now := cmd.GetTime().AsTime()
	if exp := tok.GetExpiresAt(); exp != nil && !now.Before(exp.AsTime()) {
		return nil, ErrTokenExpired
	}
	h := c.GetHost()
	if h.GetId() == "" || h.GetNkey() == "" {
		return nil, fmt.Errorf("enrol host: id and nkey are required")
	}
	if _, ok := s.hosts[h.GetId()]; ok {
		return nil, fmt.Errorf("host %s: %w", h.GetId(), ErrExists)
	}
	host := proto.CloneOf(h)
	host.EnrollTokenId = id
	host.EnrolledAt = cmd.GetTime()
	if len(tok.GetLabels()) > 0 {
		if host.Labels == nil {
			host.Labels = map[string]string{}
		}
		for k, v := range tok.GetLabels() {
			host.Labels[k] = v
		}
	}
	s.hosts[host.GetId()] = host
	tok.UsedByHost = host.GetId()
	tok.UsedAt = cmd.GetTime()
	return &palisadev1.AuditEntry{Action: "host.enroll", Target: host.GetId(),
		Detail: fmt.Sprintf("hostname=%s token=%s", host.GetHostname(), id)}, nil
}
