package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// IMDS paths and headers used by the scenarios.
const (
	instanceIDPath  = "/latest/meta-data/instance-id"
	credentialsPath = "/latest/meta-data/iam/security-credentials/"
	tokenPath       = "/latest/api/token"
	tokenHeader     = "X-aws-ec2-metadata-token"
	tokenTTLHeader  = "X-aws-ec2-metadata-token-ttl-seconds"
	tokenTTL        = "21600"

	// target is the imds/net/http throughput ratio every scenario should
	// reach (issue 15: at least the net/http constant server).
	target = 1.0
)

type header struct{ name, value string }

// scenario is one kind of request, sent identically to both servers.
type scenario struct {
	name    string
	method  string
	path    string
	headers []header
	target  float64 // minimum imds/reference ratio; 0: no target
	// check validates the body of a 200 response from imds (nil: any
	// non-empty body).
	check func(body []byte) error
}

// needsScript reports whether wrk needs a Lua script for the method.
func (sc scenario) needsScript() bool { return sc.method != http.MethodGet }

// newHTTPClient is the client of the setup and sanity-check requests.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
}

// do sends one request and returns the status and body.
func do(ctx context.Context, client *http.Client, method, url string, headers []header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	for _, h := range headers {
		req.Header.Set(h.name, h.value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp.StatusCode, body, nil
}

// get200 sends one request and fails unless it gets a 200 with a body.
func get200(ctx context.Context, client *http.Client, method, url string, headers []header) ([]byte, error) {
	status, body, err := do(ctx, client, method, url, headers)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s %s: status %d, want 200: %.200q", method, url, status, body)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%s %s: empty body", method, url)
	}
	return body, nil
}

// imdsProbe succeeds once imds answers GET instance-id with 200.
func imdsProbe(client *http.Client, baseURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := get200(ctx, client, http.MethodGet, baseURL+instanceIDPath, nil)
		return err
	}
}

// prepareScenarios asks imds for a session token and the name of the
// instance's role, and returns the scenarios using them.
func prepareScenarios(ctx context.Context, client *http.Client, imdsURL string) ([]scenario, error) {
	ttl := []header{{tokenTTLHeader, tokenTTL}}
	tok, err := get200(ctx, client, http.MethodPut, imdsURL+tokenPath, ttl)
	if err != nil {
		return nil, fmt.Errorf("get a session token: %w", err)
	}
	withToken := []header{{tokenHeader, strings.TrimSpace(string(tok))}}
	roles, err := get200(ctx, client, http.MethodGet, imdsURL+credentialsPath, withToken)
	if err != nil {
		return nil, fmt.Errorf("list the instance's role: %w", err)
	}
	role, err := firstLine(roles)
	if err != nil {
		return nil, fmt.Errorf("list the instance's role: %w", err)
	}
	return []scenario{
		{name: "v1 GET instance-id", method: http.MethodGet, path: instanceIDPath, target: target},
		{
			name: "v2 GET credentials", method: http.MethodGet, path: credentialsPath + role,
			headers: withToken, target: target, check: checkCredentials,
		},
		{name: "token PUT", method: http.MethodPut, path: tokenPath, headers: ttl, target: target},
	}, nil
}

// firstLine returns the first non-empty line of body.
func firstLine(body []byte) (string, error) {
	for line := range strings.Lines(string(body)) {
		if s := strings.TrimSpace(line); s != "" {
			return s, nil
		}
	}
	return "", errors.New("empty listing")
}

// checkCredentials accepts a credentials document.
func checkCredentials(body []byte) error {
	if !bytes.Contains(body, []byte(`"AccessKeyId"`)) {
		return fmt.Errorf("no \"AccessKeyId\" in credentials: %.200q", body)
	}
	return nil
}

// sanityCheck sends sc once to baseURL and validates the response; the
// body check applies only when strict (imds, not the reference).
func sanityCheck(ctx context.Context, client *http.Client, baseURL string, sc scenario, strict bool) error {
	body, err := get200(ctx, client, sc.method, baseURL+sc.path, sc.headers)
	if err != nil {
		return err
	}
	if strict && sc.check != nil {
		return sc.check(body)
	}
	return nil
}
