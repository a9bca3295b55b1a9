// Package identity keeps an enrolled agent's identity on disk: its host
// id, the cluster it belongs to, its NATS nkey seed (and, against an
// external NATS cluster, its NATS user JWT) and the controller's
// command-signing key. The file is written atomically with mode 0600 in a
// 0700 directory.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/internal/fileutil"
	"github.com/palisade-sec/palisade/internal/subjects"
)

// FileName is the identity file inside the state dir.
const FileName = "identity.json"

// ErrNotEnrolled is returned by Load when the state dir holds no identity.
var ErrNotEnrolled = errors.New("not enrolled")

// Identity is who this agent is.
type Identity struct {
	ControllerURL    string    `json:"controller_url"`
	ClusterID        string    `json:"cluster_id"`
	HostID           string    `json:"host_id"`
	NKeySeed         string    `json:"nkey_seed"`
	SigningPublicKey []byte    `json:"signing_public_key"`
	NATSURLs         []string  `json:"nats_urls"`
	EnrolledAt       time.Time `json:"enrolled_at"`
	// NATSUserJWT is the agent's NATS user JWT (external NATS in operator
	// mode), issued for the public key of NKeySeed; empty: nkey alone.
	NATSUserJWT string `json:"nats_user_jwt,omitempty"`
	// CAPEM is the CA the agent trusts for the controller's API and NATS
	// (TLS); empty: plain connections or the system roots.
	CAPEM []byte `json:"ca_pem,omitempty"`
}

// Validate checks that an identity is complete and consistent.
func (id *Identity) Validate() error {
	var errs []error
	if !subjects.ValidHostID(id.HostID) {
		errs = append(errs, fmt.Errorf("host_id %q is not valid", id.HostID))
	}
	if id.ClusterID == "" {
		errs = append(errs, errors.New("cluster_id is empty"))
	}
	kp, err := nkeys.FromSeed([]byte(id.NKeySeed))
	if err != nil {
		errs = append(errs, fmt.Errorf("nkey_seed: %w", err))
	}
	if id.NATSUserJWT != "" {
		uc, err := jwt.DecodeUserClaims(id.NATSUserJWT)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("nats_user_jwt: %w", err))
		case kp != nil:
			if pub, _ := kp.PublicKey(); uc.Subject != pub {
				errs = append(errs, fmt.Errorf("nats_user_jwt is for %s, not this identity's nkey %s", uc.Subject, pub))
			}
		}
	}
	if kp != nil {
		kp.Wipe()
	}
	if len(id.SigningPublicKey) != 32 {
		errs = append(errs, fmt.Errorf("signing_public_key has %d bytes, want 32", len(id.SigningPublicKey)))
	}
	if len(id.NATSURLs) == 0 {
		errs = append(errs, errors.New("nats_urls is empty"))
	}
	return errors.Join(errs...)
}

// Path is the identity file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Load reads the identity from dir. It refuses a file readable by others.
func Load(dir string) (*Identity, error) {
	p := Path(dir)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("stat identity: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity %s has mode %o: it holds a secret and must not be readable by others (chmod 600)", p, fi.Mode().Perm())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("identity %s is corrupt: %w", p, err)
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("identity %s is invalid: %w", p, err)
	}
	return &id, nil
}

// Save writes the identity to dir, creating dir with mode 0700.
func Save(dir string, id *Identity) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("refusing to save invalid identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encode identity: %w", err)
	}
	return fileutil.WriteAtomic(Path(dir), data, 0o600)
}
