package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/palisade-sec/palisade/internal/apiv1"
)

type idempotencyKey struct{}

type idempotency struct {
	key         string // token id + NUL + the client's key
	fingerprint string
}

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 128

// withIdempotency reads a mutation's body (bounded) so that it can be
// fingerprinted, and, when the request carries an Idempotency-Key, puts
// the key (scoped to the caller's token) and the fingerprint in the
// context for propose. The FSM keeps key -> result, so a retry of a
// committed request returns its result and never acts twice, even when
// the retry reaches another node after a failover.
func withIdempotency(w http.ResponseWriter, r *http.Request, p principal) (*http.Request, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	key := r.Header.Get(apiv1.HeaderIdempotencyKey)
	if key == "" {
		return r, true
	}
	if len(key) > MaxIdempotencyKeyLen || !utf8.ValidString(key) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: at most %d bytes of UTF-8", apiv1.HeaderIdempotencyKey, MaxIdempotencyKeyLen))
		return nil, false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.Method, r.URL.Path)
	h.Write(body)
	ik := idempotency{key: p.TokenID + "\x00" + key, fingerprint: hex.EncodeToString(h.Sum(nil))}
	return r.WithContext(withValue(r, idempotencyKey{}, ik)), true
}
