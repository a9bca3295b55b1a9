// Package apiv1 holds the JSON bodies of the controller's /api/v1 routes,
// shared by the server, palisadectl and the agent's enrolment client.
package apiv1

import (
	"encoding/json"
	"time"
)

// Error is every error response's body.
type Error struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

// Feature is a probed sensor capability as the last heartbeat reported it.
type Feature struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
}

// Host is one enrolled host.
type Host struct {
	ID               string            `json:"id"`
	Hostname         string            `json:"hostname"`
	OS               string            `json:"os"`
	Arch             string            `json:"arch"`
	Kernel           string            `json:"kernel"`
	AgentVersion     string            `json:"agent_version"`
	Labels           map[string]string `json:"labels,omitempty"`
	Online           bool              `json:"online"`
	Quarantined      bool              `json:"quarantined"`
	QuarantineReason string            `json:"quarantine_reason,omitempty"`
	LastSeen         *time.Time        `json:"last_seen"`
	EnrolledAt       *time.Time        `json:"enrolled_at"`
	PolicyVersion    uint64            `json:"policy_version"`
	PolicyRevision   uint64            `json:"policy_revision,omitempty"`
	Features         []Feature         `json:"features,omitempty"`
	RingbufDrops     uint64            `json:"ringbuf_drops"`
	EventsLost       uint64            `json:"events_lost"`
}

// HostList is GET /api/v1/hosts.
type HostList struct {
	Hosts []Host `json:"hosts"`
}

// CreateEnrollTokenRequest is POST /api/v1/enroll-tokens (every field optional).
type CreateEnrollTokenRequest struct {
	// TTL is a Go duration ("24h"); default 24h, at most 720h.
	TTL    string            `json:"ttl,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// EnrollToken describes an enrolment token; Token (the secret) is only
// present in the response that created it.
type EnrollToken struct {
	ID         string            `json:"id"`
	Token      string            `json:"token,omitempty"`
	CreatedAt  *time.Time        `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at"`
	UsedByHost string            `json:"used_by_host,omitempty"`
	UsedAt     *time.Time        `json:"used_at,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// EnrollTokenList is GET /api/v1/enroll-tokens.
type EnrollTokenList struct {
	Tokens []EnrollToken `json:"tokens"`
}

// EnrollRequest is POST /api/v1/enroll, sent by an agent.
type EnrollRequest struct {
	Token        string `json:"token"`
	Hostname     string `json:"hostname"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	Kernel       string `json:"kernel"`
	AgentVersion string `json:"agent_version"`
	// NKey is the agent's NATS public user nkey; the seed never leaves the host.
	NKey string `json:"nkey"`
}

// EnrollResponse tells an agent who it is and where to connect.
type EnrollResponse struct {
	HostID    string   `json:"host_id"`
	ClusterID string   `json:"cluster_id"`
	NATSURLs  []string `json:"nats_urls"`
	// SigningPublicKey is the controller's ed25519 command-signing key (base64 std).
	SigningPublicKey string `json:"signing_public_key"`
	// NATSUserJWT (external NATS in operator mode) is the agent's NATS
	// user JWT, issued for its nkey; the agent connects with it and signs
	// the server's nonce with its nkey. Empty in embedded mode.
	NATSUserJWT string `json:"nats_user_jwt,omitempty"`
}

// EnrollInfo is GET /api/v1/enroll/info (unauthenticated): enough for an
// enrolled agent to check it still talks to its own cluster.
type EnrollInfo struct {
	ClusterID        string   `json:"cluster_id"`
	SigningPublicKey string   `json:"signing_public_key"`
	NATSURLs         []string `json:"nats_urls"`
}

// AuditEntry is one audit log record.
type AuditEntry struct {
	Index     uint64     `json:"index"`
	Time      *time.Time `json:"time"`
	Actor     string     `json:"actor"`
	Action    string     `json:"action"`
	Target    string     `json:"target"`
	RequestID string     `json:"request_id"`
	Detail    string     `json:"detail,omitempty"`
}

// AuditList is GET /api/v1/audit.
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
}

// Headers the API reads and writes.
const (
	// HeaderIdempotencyKey on a mutation makes a retry return the first
	// attempt's result instead of acting again (kept 24h per token).
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplay is "true" on the answer to such a retry.
	HeaderIdempotentReplay = "Idempotent-Replayed"
	// HeaderForwardedBy is set by a follower that forwarded a request to
	// the leader (never forwarded twice).
	HeaderForwardedBy = "X-Palisade-Forwarded-By"
)

// SetLabelsRequest is PUT /api/v1/hosts/{id}/labels: the complete new set.
type SetLabelsRequest struct {
	Labels map[string]string `json:"labels"`
}

// QuarantineRequest is POST /api/v1/hosts/{id}/quarantine and /release.
type QuarantineRequest struct {
	Reason     string `json:"reason"`
	IncidentID string `json:"incident_id,omitempty"`
}

// KillRequest is POST /api/v1/hosts/{id}/kill.
type KillRequest struct {
	PID        uint32 `json:"pid"`
	Tree       bool   `json:"tree,omitempty"`
	Reason     string `json:"reason"`
	IncidentID string `json:"incident_id,omitempty"`
}

// Action is one containment action and its lifecycle.
type Action struct {
	ID          string     `json:"id"`
	HostID      string     `json:"host_id"`
	Kind        string     `json:"kind"`  // quarantine, release, kill, block, hunt-credential
	State       string     `json:"state"` // requested, sent, acked, failed, expired
	Actor       string     `json:"actor"`
	Reason      string     `json:"reason,omitempty"`
	IncidentID  string     `json:"incident_id,omitempty"`
	RequestedAt *time.Time `json:"requested_at"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	Error       string     `json:"error,omitempty"`
	Detail      string     `json:"detail,omitempty"`
	PID         uint32     `json:"pid,omitempty"`
	Tree        bool       `json:"tree,omitempty"`
	CIDR        string     `json:"cidr,omitempty"`
}

// ActionList is GET /api/v1/actions.
type ActionList struct {
	Actions []Action `json:"actions"`
}

// Incident is one incident.
type Incident struct {
	ID             string     `json:"id"`
	HostID         string     `json:"host_id"`
	Rule           string     `json:"rule"`
	Severity       string     `json:"severity"`
	Status         string     `json:"status"` // open, acknowledged, resolved
	Title          string     `json:"title,omitempty"`
	AlertIDs       []string   `json:"alert_ids"`
	ActionIDs      []string   `json:"action_ids"`
	CreatedAt      *time.Time `json:"created_at"`
	UpdatedAt      *time.Time `json:"updated_at"`
	CreatedBy      string     `json:"created_by"`
	AcknowledgedBy string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
	ResolvedBy     string     `json:"resolved_by,omitempty"`
	ResolvedAt     *time.Time `json:"resolved_at,omitempty"`
	Note           string     `json:"note,omitempty"`
}

// IncidentList is GET /api/v1/incidents.
type IncidentList struct {
	Incidents []Incident `json:"incidents"`
}

// CreateIncidentRequest is POST /api/v1/incidents (a manual incident; the
// detection engine creates its own through Raft).
type CreateIncidentRequest struct {
	HostID   string   `json:"host_id"`
	Rule     string   `json:"rule"`
	Severity string   `json:"severity"` // low, medium, high, critical
	Title    string   `json:"title,omitempty"`
	AlertIDs []string `json:"alert_ids,omitempty"`
}

// IncidentUpdateRequest is POST /api/v1/incidents/{id}/acknowledge and /resolve.
type IncidentUpdateRequest struct {
	Note string `json:"note,omitempty"`
}

// ApplyPolicyRequest is POST /api/v1/policies.
type ApplyPolicyRequest struct {
	// Source is the policy YAML document.
	Source string `json:"source"`
	// Name names the source in validation messages (a file name).
	Name    string `json:"name,omitempty"`
	Comment string `json:"comment,omitempty"`
	// DryRun validates and compiles without applying.
	DryRun bool `json:"dry_run,omitempty"`
}

// PolicyProblem is one validation problem of a policy document.
type PolicyProblem struct {
	Path    string `json:"path,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// Policy is one policy version. Source and Bundle are only in GET
// /api/v1/policies/{version}.
type Policy struct {
	Version        uint64     `json:"version"`
	Name           string     `json:"name"`
	SourceSHA256   string     `json:"source_sha256"`
	SourceName     string     `json:"source_name,omitempty"`
	Current        bool       `json:"current"`
	CreatedAt      *time.Time `json:"created_at"`
	CreatedBy      string     `json:"created_by"`
	Comment        string     `json:"comment,omitempty"`
	RolledBackFrom uint64     `json:"rolled_back_from,omitempty"`
	Source         string     `json:"source,omitempty"`
	// Bundle is the compiled bundle agents receive (protojson).
	Bundle json.RawMessage `json:"bundle,omitempty"`
}

// PolicyList is GET /api/v1/policies.
type PolicyList struct {
	Current  uint64   `json:"current"`
	Policies []Policy `json:"policies"`
}

// RollbackRequest is POST /api/v1/policies/{version}/rollback.
type RollbackRequest struct {
	Comment string `json:"comment,omitempty"`
}

// IOC is an indicator of compromise.
type IOC struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"` // ip, cidr, sha256
	Value     string     `json:"value"`
	Source    string     `json:"source,omitempty"`
	Comment   string     `json:"comment,omitempty"`
	CreatedAt *time.Time `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedBy string     `json:"created_by"`
	Expired   bool       `json:"expired"`
}

// AddIOCRequest is POST /api/v1/iocs.
type AddIOCRequest struct {
	Type    string `json:"type"` // ip, cidr, sha256
	Value   string `json:"value"`
	Source  string `json:"source,omitempty"`
	Comment string `json:"comment,omitempty"`
	// TTL is a Go duration; empty: never expires.
	TTL string `json:"ttl,omitempty"`
}

// IOCList is GET /api/v1/iocs.
type IOCList struct {
	IOCs []IOC `json:"iocs"`
}

// LeakedCredential is a reported leaked access key (its id masked).
type LeakedCredential struct {
	ID          string     `json:"id"`
	Provider    string     `json:"provider"`
	KeyIDMasked string     `json:"key_id_masked"`
	KeyIDSHA256 string     `json:"key_id_sha256"`
	ReportedBy  string     `json:"reported_by"`
	Source      string     `json:"source,omitempty"`
	Status      string     `json:"status"` // active, contained, revoked
	CreatedAt   *time.Time `json:"created_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	Comment     string     `json:"comment,omitempty"`
}

// AddLeakedCredentialRequest is POST /api/v1/leaked-credentials.
type AddLeakedCredentialRequest struct {
	KeyID    string `json:"key_id"`
	Provider string `json:"provider,omitempty"` // alibaba, aws (default: from the prefix)
	Source   string `json:"source,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

// LeakedCredentialList is GET /api/v1/leaked-credentials.
type LeakedCredentialList struct {
	Credentials []LeakedCredential `json:"credentials"`
}

// APIToken describes an API token; Token (the secret) only in the answer
// that created it.
type APIToken struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Token     string     `json:"token,omitempty"`
	CreatedAt *time.Time `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

// CreateAPITokenRequest is POST /api/v1/tokens.
type CreateAPITokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"` // viewer, responder, admin
	// TTL is a Go duration; empty: no expiry.
	TTL string `json:"ttl,omitempty"`
}

// APITokenList is GET /api/v1/tokens.
type APITokenList struct {
	Tokens []APIToken `json:"tokens"`
}

// ClusterNode is one member of the controller cluster.
type ClusterNode struct {
	ID      string `json:"id"`
	Address string `json:"address"` // Raft address
	Voter   bool   `json:"voter"`
	// State is the node's own Raft state as it reports it (Leader,
	// Follower, Candidate) or "unreachable".
	State              string `json:"state"`
	APIURL             string `json:"api_url,omitempty"`
	NATSClusterAddress string `json:"nats_cluster_address,omitempty"`
	AppliedIndex       uint64 `json:"applied_index,omitempty"`
}

// Cluster is GET /api/v1/cluster.
type Cluster struct {
	Leader string        `json:"leader"`
	Nodes  []ClusterNode `json:"nodes"`
}

// JoinRequest is POST /api/v1/cluster/join, sent by a node joining
// through --join.
type JoinRequest struct {
	NodeID             string `json:"node_id"`
	RaftAddress        string `json:"raft_address"`
	APIURL             string `json:"api_url"`
	NATSClusterAddress string `json:"nats_cluster_address,omitempty"`
	NATSClientURL      string `json:"nats_client_url,omitempty"`
}

// JoinResponse answers a join.
type JoinResponse struct {
	ClusterID string `json:"cluster_id"`
	Leader    string `json:"leader"`
}

// Health is GET /healthz.
type Health struct {
	Status       string `json:"status"`
	Node         string `json:"node"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_addr"`
	AppliedIndex uint64 `json:"applied_index"`
}

// SecretScanningMatch is one entry of a GitHub-style secret scanning
// alert (POST /api/v1/leaked-credentials/secret-scanning takes a list).
type SecretScanningMatch struct {
	Token  string `json:"token"`
	Type   string `json:"type,omitempty"`
	URL    string `json:"url,omitempty"`
	Source string `json:"source,omitempty"`
}

// BlastRadius is where agents found a leaked key
// (GET /api/v1/leaked-credentials/{id}/blast-radius).
type BlastRadius struct {
	ID        string         `json:"id"`
	Key       string         `json:"key"` // masked
	Hosts     []string       `json:"hosts"`
	Files     []BlastFile    `json:"files"`
	Processes []BlastProcess `json:"processes"`
}

// BlastFile is a file holding a leaked key.
type BlastFile struct {
	Host string `json:"host"`
	Path string `json:"path"`
	Line string `json:"line,omitempty"`
}

// BlastProcess is a process found using a leaked key.
type BlastProcess struct {
	Host   string `json:"host"`
	PID    uint32 `json:"pid"`
	Exe    string `json:"exe"`
	Where  string `json:"where"` // e.g. "AKIA****MPLE in env AWS_ACCESS_KEY_ID"
	Killed bool   `json:"killed"`
	Alert  string `json:"alert"`
}
