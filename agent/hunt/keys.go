package hunt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Key is one leaked access key id to look for. Either ID is set (the
// full id, as a hunt command carries it), or SHA256, Prefix and Length are
// (as the controller's LeakedCredential record keeps it): candidates in
// text are then strings of Length key characters starting with Prefix,
// and a candidate matches when its sha256 equals SHA256. Either way the
// KeySet keeps only digests, prefixes and masked forms.
type Key struct {
	ID     string
	SHA256 string // lowercase hex
	Prefix string
	Length int
	Masked string // for display; derived from ID when empty
}

// KeyFromCredential builds a Key from a controller record.
func KeyFromCredential(c *palisadev1.LeakedCredential) Key {
	return Key{SHA256: c.GetKeyIdSha256(), Prefix: c.GetKeyIdPrefix(), Length: int(c.GetKeyIdLength()), Masked: c.GetKeyIdMasked()}
}

// Mask shows the first and last four characters of a key id:
// AKIAIOSFODNN7EXAMPLE becomes AKIA****MPLE. Ids of 12 characters or
// fewer show only their first four.
func Mask(id string) string {
	if len(id) <= 12 {
		if len(id) <= 4 {
			return "****"
		}
		return id[:4] + "****"
	}
	return id[:4] + "****" + id[len(id)-4:]
}

// Digest is the lowercase hex sha256 of a key id.
func Digest(id string) string {
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:])
}

// MinKeyLength and MinPrefixLength keep a key set from matching noise.
const (
	MinKeyLength    = 12
	MinPrefixLength = 3
)

type shape struct {
	prefix string
	length int
}

// KeySet matches leaked key ids in text. It is immutable and safe for
// concurrent use. A nil *KeySet matches nothing.
type KeySet struct {
	masked map[string]string // sha256 -> masked id
	shapes []shape
}

// NewKeySet validates keys and builds a set.
func NewKeySet(keys []Key) (*KeySet, error) {
	s := &KeySet{masked: map[string]string{}}
	seen := map[shape]bool{}
	var errs []error
	for i, k := range keys {
		if k.ID != "" {
			if len(k.ID) < MinKeyLength || !allKeyChars(k.ID) {
				errs = append(errs, fmt.Errorf("key %d (%s): a key id is at least %d letters and digits", i, Mask(k.ID), MinKeyLength))
				continue
			}
			k.SHA256, k.Length, k.Masked = Digest(k.ID), len(k.ID), Mask(k.ID)
			if k.Prefix == "" || !strings.HasPrefix(k.ID, k.Prefix) {
				k.Prefix = k.ID[:4]
			}
		}
		k.SHA256 = strings.ToLower(k.SHA256)
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("key %d: sha256 is not 64 hex digits", i))
			continue
		}
		if len(k.Prefix) < MinPrefixLength || !allKeyChars(k.Prefix) || k.Length < MinKeyLength || k.Length < len(k.Prefix) {
			errs = append(errs, fmt.Errorf("key %d: need a prefix of at least %d key characters and a length of at least %d", i, MinPrefixLength, MinKeyLength))
			continue
		}
		if k.Masked == "" {
			k.Masked = k.Prefix + "****"
		}
		s.masked[k.SHA256] = k.Masked
		sh := shape{k.Prefix, k.Length}
		if !seen[sh] {
			seen[sh] = true
			s.shapes = append(s.shapes, sh)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(s.shapes, func(i, j int) bool { return s.shapes[i].prefix < s.shapes[j].prefix })
	return s, nil
}

// Len is the number of keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.masked)
}

// Match is one occurrence of a leaked key.
type Match struct {
	Masked string
	SHA256 string
	Offset int
}

func isKeyChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

func allKeyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isKeyChar(s[i]) {
			return false
		}
	}
	return s != ""
}

// Find returns every occurrence of a key in text. An occurrence must not
// be part of a longer run of key characters (AKIA… inside a longer token
// is not that key).
func (s *KeySet) Find(text string) []Match {
	if s.Len() == 0 {
		return nil
	}
	var out []Match
	for _, sh := range s.shapes {
		for off := 0; off < len(text); {
			i := strings.Index(text[off:], sh.prefix)
			if i < 0 {
				break
			}
			start := off + i
			off = start + 1
			end := start + sh.length
			if end > len(text) || (start > 0 && isKeyChar(text[start-1])) || (end < len(text) && isKeyChar(text[end])) {
				continue
			}
			cand := text[start:end]
			if !allKeyChars(cand) {
				continue
			}
			sum := Digest(cand)
			if m, ok := s.masked[sum]; ok {
				out = append(out, Match{Masked: m, SHA256: sum, Offset: start})
			}
		}
	}
	return out
}

// Contains reports whether text holds any key.
func (s *KeySet) Contains(text string) bool {
	if s.Len() == 0 {
		return false
	}
	for _, sh := range s.shapes {
		if strings.Contains(text, sh.prefix) && len(s.Find(text)) > 0 {
			return true
		}
	}
	return false
}

// Masked lists the masked ids of the set, sorted.
func (s *KeySet) Masked() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.masked))
	for _, m := range s.masked {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
