// Package apiclient is the Go client of the controller's /api/v1, used by
// palisadectl and by the agent's enrolment.
package apiclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/devca"
)

// Error is a non-2xx answer from the API.
type Error struct {
	Status   int
	Message  string
	Problems []string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	for _, p := range e.Problems {
		msg += "\n  - " + p
	}
	return msg
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Client talks to a controller cluster through any of its nodes.
type Client struct {
	bases []*url.URL
	token string
	http  *http.Client
	// RetryFor bounds retrying a request that met an unavailable node or
	// a cluster between leaders (503, connection errors); 0: no retries.
	RetryFor time.Duration

	mu   sync.Mutex
	next int // index of the base URL to try first
}

// New returns a client for the API at baseURL ("http://host:port", or
// several separated by commas: the nodes of one cluster, tried in turn);
// token may be empty for unauthenticated routes. Requests that meet an
// unavailable node or a leader election are retried for 15s (RetryFor);
// every mutation carries an Idempotency-Key (generated unless the caller
// set one with WithIdempotencyKey), so a retry never acts twice.
func New(baseURL, token string) (*Client, error) {
	c := &Client{token: token, http: &http.Client{Timeout: 30 * time.Second}, RetryFor: 15 * time.Second}
	for _, raw := range strings.Split(baseURL, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil {
			return nil, fmt.Errorf("api url %q: %w", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("api url %q: want http(s)://host:port", raw)
		}
		c.bases = append(c.bases, u)
	}
	return c, nil
}

// TrustCA makes the client verify https servers against the PEM CA
// certificates (the controller's dev CA, DATA_DIR/ca.pem) instead of the
// system roots.
func (c *Client) TrustCA(caPEM []byte) error {
	pool, err := devca.Pool(caPEM)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	c.UseTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	return nil
}

// UseTLS sets the TLS configuration for https servers.
func (c *Client) UseTLS(cfg *tls.Config) {
	c.http.Transport = &http.Transport{TLSClientConfig: cfg.Clone(), Proxy: http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}
}

type idemKey struct{}

// WithIdempotencyKey makes the mutation sent with ctx carry key (instead
// of a generated one): retries with the same key, even from another
// process, return the first result.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when non-nil). It retries (see RetryFor) on 503 and on
// connection errors, moving to the next node.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var data []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		data = b
	}
	key := ""
	if method != http.MethodGet && method != http.MethodHead {
		key, _ = ctx.Value(idemKey{}).(string)
		if key == "" {
			key = newKey()
		}
	}
	deadline := time.Now().Add(c.RetryFor)
	backoff := 50 * time.Millisecond
	for {
		err := c.once(ctx, method, path, query, data, body != nil, key, out)
		if err == nil || !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		c.mu.Lock()
		c.next = (c.next + 1) % len(c.bases)
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway
	}
	var ne *netError
	return errors.As(err, &ne)
}

// netError marks a transport failure (the node is down or unreachable).
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

func (c *Client) once(ctx context.Context, method, path string, query url.Values, data []byte, hasBody bool, key string, out any) error {
	c.mu.Lock()
	u := *c.bases[c.next]
	c.mu.Unlock()
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key != "" {
		req.Header.Set(apiv1.HeaderIdempotencyKey, key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		return fmt.Errorf("%s %s: %w", method, path, &netError{err})
	}
	defer resp.Body.Close()
	respData, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb apiv1.Error
		if json.Unmarshal(respData, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(respData))
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error, Problems: eb.Problems}
	}
	if out != nil {
		if err := json.Unmarshal(respData, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// Hosts lists hosts.
func (c *Client) Hosts(ctx context.Context) (*apiv1.HostList, error) {
	var out apiv1.HostList
	return &out, c.Do(ctx, http.MethodGet, "/api/v1/hosts", nil, nil, &out)
}

// CreateEnrollToken creates an enrolment token.
func (c *Client) CreateEnrollToken(ctx context.Context, req apiv1.CreateEnrollTokenRequest) (*apiv1.EnrollToken, error) {
	var out apiv1.EnrollToken
	return &out, c.Do(ctx, http.MethodPost, "/api/v1/enroll-tokens", nil, req, &out)
}

// Enroll enrols a host (agent side; unauthenticated, the token is in the body).
func (c *Client) Enroll(ctx context.Context, req apiv1.EnrollRequest) (*apiv1.EnrollResponse, error) {
	var out apiv1.EnrollResponse
	return &out, c.Do(ctx, http.MethodPost, "/api/v1/enroll", nil, req, &out)
}

// EnrollInfo fetches the cluster's identity (unauthenticated).
func (c *Client) EnrollInfo(ctx context.Context) (*apiv1.EnrollInfo, error) {
	var out apiv1.EnrollInfo
	return &out, c.Do(ctx, http.MethodGet, "/api/v1/enroll/info", nil, nil, &out)
}
