// Package cmdsign signs the controller's commands and verifies them on the
// agent. The signature is ed25519 over the exact serialized Command bytes
// carried in a SignedCommand, so verification never depends on
// re-serialisation. The agent pins the controller's public key at
// enrolment.
package cmdsign

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Errors Verify returns.
var (
	ErrBadSignature = errors.New("command signature does not verify")
	ErrWrongHost    = errors.New("command is for another host")
	ErrExpired      = errors.New("command has expired")
	ErrMalformed    = errors.New("malformed command")
)

// KeyID names a public key (first 8 bytes of its sha256, hex).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign serializes and signs cmd with the seed of the cluster's signing key.
func Sign(seed []byte, cmd *palisadev1.Command) ([]byte, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing seed has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	sc := &palisadev1.SignedCommand{
		Command:   body,
		Signature: ed25519.Sign(priv, body),
		KeyId:     KeyID(priv.Public().(ed25519.PublicKey)),
	}
	return proto.Marshal(sc)
}

// Verify decodes a SignedCommand, checks its signature with pub, that it
// is addressed to hostID and that it has not expired at now. On
// ErrExpired the decoded (authentic) command is returned too, so the
// agent can report the expiry.
func Verify(pub ed25519.PublicKey, hostID string, data []byte, now time.Time) (*palisadev1.Command, error) {
	var sc palisadev1.SignedCommand
	if err := proto.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, sc.GetCommand(), sc.GetSignature()) {
		return nil, ErrBadSignature
	}
	var cmd palisadev1.Command
	if err := proto.Unmarshal(sc.GetCommand(), &cmd); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if cmd.GetCommandId() == "" || cmd.GetKind() == nil || cmd.GetExpiresAt() == nil {
		return nil, fmt.Errorf("%w: id, kind and expiry are required", ErrMalformed)
	}
	if cmd.GetHostId() != hostID {
		return nil, ErrWrongHost
	}
	if !now.Before(cmd.GetExpiresAt().AsTime()) {
		return &cmd, ErrExpired
	}
	return &cmd, nil
}

// SignBundle serializes and signs a policy bundle.
func SignBundle(seed []byte, b *palisadev1.PolicyBundle) ([]byte, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing seed has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return proto.Marshal(&palisadev1.SignedBundle{
		Bundle: body, Signature: ed25519.Sign(priv, body), KeyId: KeyID(priv.Public().(ed25519.PublicKey)),
	})
}

// VerifyBundle decodes a SignedBundle and checks its signature with pub.
// The bundle's content still needs policy.ValidateBundle.
func VerifyBundle(pub ed25519.PublicKey, data []byte) (*palisadev1.PolicyBundle, error) {
	var sb palisadev1.SignedBundle
	if err := proto.Unmarshal(data, &sb); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, sb.GetBundle(), sb.GetSignature()) {
		return nil, ErrBadSignature
	}
	var b palisadev1.PolicyBundle
	if err := proto.Unmarshal(sb.GetBundle(), &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &b, nil
}
