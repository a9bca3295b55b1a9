// Package apiclient is the Go client of the controller's /api/v1, used by
// palisadectl and by the agent's enrolment.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/internal/apiv1"
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

// Client talks to one controller.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client for the API at baseURL ("http://host:port"); token
// may be empty for unauthenticated routes.
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("api url %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("api url %q: want http(s)://host:port", baseURL)
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when non-nil).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb apiv1.Error
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(data))
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error, Problems: eb.Problems}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
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
