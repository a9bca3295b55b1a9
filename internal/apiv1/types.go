// Package apiv1 holds the JSON bodies of the controller's /api/v1 routes,
// shared by the server, palisadectl and the agent's enrolment client.
package apiv1

import "time"

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
