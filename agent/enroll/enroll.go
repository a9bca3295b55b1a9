// Package enroll gives an agent its identity: on first start it enrols
// with the controller using a one-time token; on later starts it reuses
// the identity in its state dir and checks that the controller it is
// pointed at belongs to the same cluster.
package enroll

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
)

// ErrClusterMismatch means the state dir belongs to another cluster.
var ErrClusterMismatch = errors.New("state dir is enrolled with another controller cluster")

// Config says where the identity lives and how to enrol.
type Config struct {
	StateDir      string
	ControllerURL string
	Token         string // used only when the state dir holds no identity
	Host          hostinfo.Info
	AgentVersion  string
	// CAPEM is the CA to trust for an https controller (its ca.pem); it is
	// kept in the identity for later starts and for NATS.
	CAPEM  []byte
	Logger *slog.Logger
}

// client returns an API client for url that trusts caPEM when given.
func client(url string, caPEM []byte) (*apiclient.Client, error) {
	cl, err := apiclient.New(url, "")
	if err != nil {
		return nil, err
	}
	if len(caPEM) > 0 {
		if err := cl.TrustCA(caPEM); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// Ensure returns the agent's identity, enrolling first if needed.
func Ensure(ctx context.Context, cfg Config) (*identity.Identity, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id, err := identity.Load(cfg.StateDir)
	switch {
	case err == nil:
		if cfg.Token != "" {
			cfg.Logger.Info("already enrolled; --enroll-token ignored", "host", id.HostID)
		}
		if err := checkCluster(ctx, cfg, id); err != nil {
			return nil, err
		}
		return id, nil
	case !errors.Is(err, identity.ErrNotEnrolled):
		return nil, err
	}
	if cfg.ControllerURL == "" || cfg.Token == "" {
		return nil, fmt.Errorf("state dir %s holds no identity: the first start needs --controller and --enroll-token", cfg.StateDir)
	}
	return enrol(ctx, cfg)
}

func enrol(ctx context.Context, cfg Config) (*identity.Identity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("generate nkey: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nkey public key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("nkey seed: %w", err)
	}
	cl, err := client(cfg.ControllerURL, cfg.CAPEM)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Enroll(ctx, apiv1.EnrollRequest{
		Token: cfg.Token, Hostname: cfg.Host.Hostname, OS: cfg.Host.OS, Arch: cfg.Host.Arch,
		Kernel: cfg.Host.Kernel, AgentVersion: cfg.AgentVersion, NKey: pub,
	})
	if err != nil {
		return nil, fmt.Errorf("enrol with %s: %w", cfg.ControllerURL, err)
	}
	sigKey, err := base64.StdEncoding.DecodeString(resp.SigningPublicKey)
	if err != nil {
		return nil, fmt.Errorf("enrol: controller sent a malformed signing key: %w", err)
	}
	id := &identity.Identity{
		ControllerURL: cfg.ControllerURL, ClusterID: resp.ClusterID, HostID: resp.HostID,
		NKeySeed: string(seed), SigningPublicKey: sigKey, NATSURLs: resp.NATSURLs,
		EnrolledAt: time.Now().UTC(), NATSUserJWT: resp.NATSUserJWT, CAPEM: cfg.CAPEM,
	}
	if err := identity.Save(cfg.StateDir, id); err != nil {
		return nil, fmt.Errorf("enrolled as %s but could not keep the identity (a new token is needed): %w", resp.HostID, err)
	}
	cfg.Logger.Info("enrolled", "host", id.HostID, "cluster", id.ClusterID)
	return id, nil
}

// checkCluster refuses to run against a controller of another cluster.
// An unreachable controller is not an error: the agent keeps enforcing
// offline and reconnects later.
func checkCluster(ctx context.Context, cfg Config, id *identity.Identity) error {
	url := cfg.ControllerURL
	if url == "" {
		url = id.ControllerURL
	}
	ca := cfg.CAPEM
	if len(ca) == 0 {
		ca = id.CAPEM
	}
	cl, err := client(url, ca)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cl.EnrollInfo(cctx)
	if err != nil {
		cfg.Logger.Warn("controller unreachable; running with the stored identity", "controller", url, "err", err)
		return nil
	}
	if info.ClusterID != id.ClusterID {
		return fmt.Errorf("%w: %s was enrolled with cluster %s (controller %s), but %s serves cluster %s; use another --state-dir, or remove %s to enrol afresh",
			ErrClusterMismatch, cfg.StateDir, id.ClusterID, id.ControllerURL, url, info.ClusterID, identity.Path(cfg.StateDir))
	}
	return nil
}
