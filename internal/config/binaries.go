package config

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/palisade-sec/palisade/internal/logging"
)

// AgentSpec names the agent's file and environment.
var AgentSpec = Spec{Name: "agent", DefaultPath: "/etc/palisade/agent.yaml"}

// ControllerSpec names the controller's file and environment.
var ControllerSpec = Spec{Name: "controller", DefaultPath: "/etc/palisade/controller.yaml"}

// Agent is palisade-agent's configuration. A field with the name of a
// daemon.Config field is copied there; LogLevel and LogFormat are main's.
// Adding a daemon.Config field: add one line here (TestAgentCoversDaemonConfig
// fails until you do).
type Agent struct {
	ControllerURL     string        `yaml:"controller" usage:"controller API URL, e.g. http://10.0.0.5:8080"`
	EnrollToken       string        `yaml:"enroll_token" usage:"one-time enrolment token (first start only)"`
	StateDir          string        `yaml:"state_dir" default:"/var/lib/palisade-agent" usage:"where the agent keeps its identity and state"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" default:"10s" usage:"how often to report to the controller"`
	CgroupPath        string        `yaml:"cgroup" usage:"cgroup v2 directory that scopes enforcement (production: the cgroup v2 root; empty: no kernel sensors)"`
	PinDir            string        `yaml:"pin_dir" usage:"where BPF objects are pinned (default /sys/fs/bpf/palisade/<scope>)"`
	PolicyFile        string        `yaml:"policy" usage:"policy file to enforce locally, with or without a controller"`
	MetricsAddr       string        `yaml:"metrics_addr" usage:"serve /metrics on this address (e.g. 127.0.0.1:9464; empty: off)"`
	CAFile            string        `yaml:"ca_file" usage:"the controller's CA certificate (its data dir's ca.pem) when it serves TLS"`
	SpoolBytes        int64         `yaml:"spool_bytes" default:"268435456" usage:"bound of the on-disk telemetry spool in bytes (items beyond it are counted as lost)"`
	LogLevel          string        `yaml:"log_level" default:"info" usage:"debug, info, warn or error"`
	LogFormat         string        `yaml:"log_format" default:"text" usage:"text or json"`
}

// Validate checks values beyond their types.
func (a *Agent) Validate() Problems {
	var ps Problems
	ps = append(ps, absPath("state_dir", a.StateDir, true)...)
	ps = append(ps, absPath("cgroup", a.CgroupPath, false)...)
	ps = append(ps, absPath("pin_dir", a.PinDir, false)...)
	ps = append(ps, absPath("policy", a.PolicyFile, false)...)
	ps = append(ps, httpURL("controller", a.ControllerURL)...)
	ps = append(ps, hostPort("metrics_addr", a.MetricsAddr, false)...)
	ps = append(ps, logSettings(a.LogLevel, a.LogFormat)...)
	return ps
}

// Controller is palisade-controller's configuration. A field with the name
// of a server.Config field is copied there; LogLevel and LogFormat are
// main's. Adding a server.Config field: add one line here
// (TestControllerCoversServerConfig fails until you do).
type Controller struct {
	NodeID                    string        `yaml:"node_id" usage:"this node's id in the Raft cluster (required)"`
	DataDir                   string        `yaml:"data_dir" default:"/var/lib/palisade-controller" usage:"where Raft, JetStream and the admin token live"`
	APIAddr                   string        `yaml:"api_addr" default:"127.0.0.1:8080" usage:"admin API listen address"`
	RaftAddr                  string        `yaml:"raft_addr" default:"127.0.0.1:7000" usage:"Raft listen (and advertised) address"`
	NATSListen                string        `yaml:"nats_listen" default:"127.0.0.1:4222" usage:"embedded NATS server listen address"`
	NATSAdvertise             string        `yaml:"nats_advertise" usage:"NATS URL given to agents (default: the embedded server's)"`
	Bootstrap                 bool          `yaml:"bootstrap" usage:"start a new cluster with this node as its first voter"`
	StartTimeout              time.Duration `yaml:"start_timeout" default:"30s" usage:"how long to wait at start for a leader and the cluster identity"`
	RaftHeartbeatTimeout      time.Duration `yaml:"raft_heartbeat_timeout" usage:"Raft heartbeat timeout (0: Raft's default)"`
	RaftElectionTimeout       time.Duration `yaml:"raft_election_timeout" usage:"Raft election timeout (0: Raft's default)"`
	RaftSnapshotThreshold     uint64        `yaml:"raft_snapshot_threshold" usage:"Raft log entries between automatic snapshots (0: 8192)"`
	RaftTrailingLogs          uint64        `yaml:"raft_trailing_logs" usage:"log entries a snapshot keeps; a follower further behind receives the snapshot (0: 10240)"`
	RaftSnapshotInterval      time.Duration `yaml:"raft_snapshot_interval" usage:"how often Raft checks the snapshot threshold (0: 2m)"`
	Join                      string        `yaml:"join" usage:"API URL of any node of an existing cluster to join (first start only)"`
	JoinTokenFile             string        `yaml:"join_token_file" usage:"file holding an admin API token that authenticates --join"`
	APIAdvertise              string        `yaml:"api_advertise" usage:"API URL other nodes use to reach this one (default http://<api_addr>)"`
	NATSClusterListen         string        `yaml:"nats_cluster_listen" usage:"embedded NATS route listener (host:port); joins the nodes' NATS servers into one cluster"`
	NATSRoutes                []string      `yaml:"nats_routes" usage:"extra NATS route addresses (host:port) beyond those of the recorded nodes"`
	NATSURL                   string        `yaml:"nats_url" usage:"use this external NATS cluster (comma-separated URLs) instead of embedding a server"`
	NATSCredsFile             string        `yaml:"nats_creds_file" usage:"NATS credentials (.creds) for the external NATS cluster"`
	NATSAccountSigningKeyFile string        `yaml:"nats_account_signing_key" usage:"external NATS: file with a signing key seed (SA…) of the controller's account; agents then get user JWTs with per-host permissions"`
	TLS                       string        `yaml:"tls" default:"off" usage:"TLS for the API and embedded NATS: off, dev (a CA made at bootstrap; clients trust DATA_DIR/ca.pem) or files"`
	TLSCertFile               string        `yaml:"tls_cert_file" usage:"serving certificate (tls: files)"`
	TLSKeyFile                string        `yaml:"tls_key_file" usage:"serving key (tls: files)"`
	TLSCAFile                 string        `yaml:"tls_ca_file" usage:"CA this node trusts when it calls other nodes (tls: files; dev: the first node's ca.pem, to --join)"`
	StreamReplicas            int           `yaml:"stream_replicas" default:"1" usage:"JetStream replicas of Palisade's streams (1 single node, 3 in a 3-node cluster)"`
	LogLevel                  string        `yaml:"log_level" default:"info" usage:"debug, info, warn or error"`
	LogFormat                 string        `yaml:"log_format" default:"text" usage:"text or json"`
}

// Validate checks values beyond their types.
func (c *Controller) Validate() Problems {
	var ps Problems
	if c.NodeID == "" {
		ps = append(ps, Problem{Key: "node_id", Msg: "required (set node_id in the file, --node-id or PALISADE_CONTROLLER_NODE_ID)"})
	}
	ps = append(ps, absPath("data_dir", c.DataDir, true)...)
	ps = append(ps, hostPort("api_addr", c.APIAddr, true)...)
	ps = append(ps, hostPort("raft_addr", c.RaftAddr, true)...)
	ps = append(ps, hostPort("nats_listen", c.NATSListen, true)...)
	if c.NATSAdvertise != "" {
		if u, err := url.Parse(c.NATSAdvertise); err != nil || u.Host == "" {
			ps = append(ps, Problem{Key: "nats_advertise", Msg: fmt.Sprintf("%q is not a URL like nats://10.0.0.5:4222", c.NATSAdvertise)})
		}
	}
	ps = append(ps, logSettings(c.LogLevel, c.LogFormat)...)
	return ps
}

func absPath(key, p string, required bool) Problems {
	switch {
	case p == "" && required:
		return Problems{{Key: key, Msg: "required"}}
	case p != "" && !filepath.IsAbs(p):
		return Problems{{Key: key, Msg: fmt.Sprintf("%q is not an absolute path", p)}}
	}
	return nil
}

func hostPort(key, addr string, required bool) Problems {
	if addr == "" {
		if required {
			return Problems{{Key: key, Msg: "required (host:port)"}}
		}
		return nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return Problems{{Key: key, Msg: fmt.Sprintf("%q is not host:port", addr)}}
	}
	return nil
}

func httpURL(key, s string) Problems {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Problems{{Key: key, Msg: fmt.Sprintf("%q is not an http(s) URL like http://10.0.0.5:8080", s)}}
	}
	return nil
}

func logSettings(level, format string) Problems {
	var ps Problems
	if _, err := logging.New(io.Discard, level, "text"); err != nil {
		ps = append(ps, Problem{Key: "log_level", Msg: fmt.Sprintf("%q: want debug, info, warn or error", level)})
	}
	if _, err := logging.New(io.Discard, "info", format); err != nil {
		ps = append(ps, Problem{Key: "log_format", Msg: fmt.Sprintf("%q: want text or json", format)})
	}
	return ps
}
