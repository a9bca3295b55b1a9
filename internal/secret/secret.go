// Package secret makes bearer secrets (API and enrolment tokens) and the
// hashes under which the controller stores them. Tokens carry 256 random
// bits, so a plain SHA-256 is a sufficient one-way hash.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Token prefixes say what a secret is when it turns up somewhere.
const (
	APITokenPrefix    = "pat_"
	EnrollTokenPrefix = "pet_"
)

// New returns prefix followed by 32 random bytes, base64url.
func New(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is the hex SHA-256 under which a token is stored.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ID returns a short random identifier with prefix (lowercase hex).
func ID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Equal compares two secrets in constant time.
func Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// Mask shows enough of a secret to recognise it in a log: its prefix and
// first four characters.
func Mask(token string) string {
	for _, p := range []string{APITokenPrefix, EnrollTokenPrefix} {
		if rest, ok := strings.CutPrefix(token, p); ok && len(rest) > 4 {
			return p + rest[:4] + "…"
		}
	}
	return "…"
}
