package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ststest"
)

// runServerWith starts a server like mustRunServer, with a clock of the test's.
func runServerWith(t *testing.T, configYAML string, clk clock.Clock) *testServer {
	t.Helper()
	return startTestServer(t, configYAML, "", clk)
}

// credsDoc is the credentials document as served.
type credsDoc struct {
	Code, Message, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration string
}

// served reads the credentials document of role with plain HTTP (IMDSv1).
func served(t *testing.T, srv *testServer, role string) credsDoc {
	t.Helper()
	resp, err := http.Get(srv.URL + "/latest/meta-data/iam/security-credentials/" + role)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("credentials: status %d", resp.StatusCode)
	}
	var d credsDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("credentials are not JSON: %v\n%s", err, b)
	}
	return d
}

// goSDKKey retrieves the role credentials with the Go SDK's ec2rolecreds
// provider, as an application on EC2 would.
func goSDKKey(t *testing.T, srv *testServer) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	c, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(ctx)
	return c.AccessKeyID, err
}

// botocoreKey retrieves the role credentials with Debian's botocore.
func botocoreKey(t *testing.T, srv *testServer) (string, error) {
	t.Helper()
	requirePythonModule(t, "botocore", "python3-botocore")
	stdout, stderr, err := runPyClient(t, srv, "botocore_client.py")
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, bytes.TrimSpace(stderr))
	}
	var out struct {
		AccessKeyID string `json:"access_key_id"`
		Method      string `json:"method"`
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		return "", err
	}
	if out.Method != "iam-role" {
		return "", fmt.Errorf("botocore took credentials from %q", out.Method)
	}
	return out.AccessKeyID, nil
}

// checkClientsSee asserts that both real clients read the key id.
func checkClientsSee(t *testing.T, srv *testServer, want string) {
	t.Helper()
	if got, err := goSDKKey(t, srv); err != nil || got != want {
		t.Errorf("Go SDK: key %q, err %v; want %q", got, err, want)
	}
	if got, err := botocoreKey(t, srv); err != nil || got != want {
		t.Errorf("botocore: key %q, err %v; want %q", got, err, want)
	}
}

func TestStaticSource(t *testing.T) {
	srv := runServerWith(t, `
roles:
  ci:
    source: static
    access_key_id: AKIAIOSFODNN7EXAMPLE
    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
instance:
  role: ci
`, nil)
	d := served(t, srv, "ci")
	exp, _ := time.Parse(time.RFC3339, d.Expiration)
	if d.Code != "Success" || d.AccessKeyId != "AKIAIOSFODNN7EXAMPLE" || time.Until(exp) < 5*time.Hour {
		t.Errorf("served %+v, want the static key with a rolling Expiration hours away", d)
	}
	checkClientsSee(t, srv, "AKIAIOSFODNN7EXAMPLE")
	if logs := srv.logs.String(); strings.Contains(logs, "wJalrXUtnFEMI") {
		t.Errorf("the secret reached the log:\n%s", logs)
	}
}

func TestStaticSourceFromEnvironment(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE123456")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecretenvsecretenvsecretenvsecret1234")
	srv := runServerWith(t, "roles:\n  ci:\n    source: static\ninstance:\n  role: ci\n", nil)
	if d := served(t, srv, "ci"); d.AccessKeyId != "AKIAENVEXAMPLE123456" {
		t.Errorf("served key %q, want the one from AWS_ACCESS_KEY_ID", d.AccessKeyId)
	}
}

// TestAWSSourceAssumeRole drives the aws source through the STS stand-in:
// the request path never calls STS, the refresher calls it again before
// expiry, and an outage keeps the old credentials until they expire.
func TestAWSSourceAssumeRole(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	sts := ststest.NewServer(t)
	sts.Now = clk.Now
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_STS": sts.URL(), "AWS_ACCESS_KEY_ID": "AKIABASEEXAMPLE12345",
		"AWS_SECRET_ACCESS_KEY": "basesecretbasesecretbasesecretbasesecret", "AWS_SESSION_TOKEN": "",
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty, "AWS_PROFILE": "", "AWS_REGION": "us-east-1",
		// One attempt per refresh: the refresher, not the SDK, retries.
		"AWS_MAX_ATTEMPTS": "1",
	} {
		t.Setenv(k, v)
	}
	srv := runServerWith(t, `
roles:
  web-role:
    source: aws
    role_arn: arn:aws:iam::123456789012:role/web
    external_id: ext-42
    session_name: imds-test
    duration: 1h
instance:
  role: web-role
`, clk)
	if sts.Calls() != 1 {
		t.Fatalf("STS called %d times at start, want 1", sts.Calls())
	}
	last := sts.LastRequest()
	if last.RoleARN != "arn:aws:iam::123456789012:role/web" || last.ExternalID != "ext-42" || last.RoleSessionName != "imds-test" || last.AccessKeyID != "AKIABASEEXAMPLE12345" {
		t.Errorf("STS saw %+v", last)
	}
	first := served(t, srv, "web-role")
	checkClientsSee(t, srv, first.AccessKeyId)

	// Hammer the credentials path: STS is not called.
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if resp, err := http.Get(srv.URL + "/latest/meta-data/iam/security-credentials/web-role"); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	if sts.Calls() != 1 {
		t.Errorf("STS called %d times after 400 credential requests, want 1", sts.Calls())
	}

	// 15 minutes before expiry the refresher calls STS again.
	advanceUntil := func(d time.Duration, calls int) {
		t.Helper()
		clk.Advance(d)
		deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
		for sts.Calls() < calls && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	advanceUntil(44*time.Minute, 2)
	if sts.Calls() != 1 {
		t.Fatalf("STS called again after 44 minutes of a 1h session")
	}
	advanceUntil(time.Minute, 2)
	if sts.Calls() != 2 {
		t.Fatalf("STS not called 15 minutes before expiry (calls=%d)", sts.Calls())
	}
	// STS has answered; the refresher stores its answer right after.
	second := served(t, srv, "web-role")
	for deadline := time.Now().Add(10 * time.Second); second.AccessKeyId == first.AccessKeyId && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		second = served(t, srv, "web-role")
	}
	if second.AccessKeyId == first.AccessKeyId {
		t.Fatalf("credentials not replaced after the refresh")
	}

	// An outage: the last good credentials stay until they expire.
	sts.SetOutage(true)
	advanceUntil(45*time.Minute, 3) // the refresh due at 90m fails
	if sts.Calls() < 3 {
		t.Fatalf("no refresh attempt during the outage")
	}
	if d := served(t, srv, "web-role"); d.AccessKeyId != second.AccessKeyId || d.Code != "Success" {
		t.Errorf("during the outage served %q, want the last good %q", d.AccessKeyId, second.AccessKeyId)
	}
	checkClientsSee(t, srv, second.AccessKeyId)
	if !strings.Contains(srv.logs.String(), "credential refresh failed") {
		t.Errorf("the failed refresh was not logged")
	}

	// Past their expiry, EC2's role error.
	clk.Advance(20 * time.Minute)
	d := served(t, srv, "web-role")
	if d.Code == "Success" || d.Message == "" || d.AccessKeyId != "" {
		t.Errorf("after expiry during the outage served %+v, want a Code other than Success with a Message", d)
	}
	if _, err := goSDKKey(t, srv); err == nil {
		t.Errorf("the Go SDK got credentials although none are valid")
	}
	if _, err := botocoreKey(t, srv); err == nil {
		t.Errorf("botocore got credentials although none are valid")
	}

	// Recovery.
	sts.SetOutage(false)
	calls := sts.Calls()
	advanceUntil(6*time.Minute, calls+1)
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	for served(t, srv, "web-role").Code != "Success" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d := served(t, srv, "web-role"); d.Code != "Success" {
		t.Errorf("no credentials after STS recovered: %+v", d)
	}
	for _, secret := range []string{"basesecretbasesecret", first.SecretAccessKey, second.SecretAccessKey, first.Token} {
		if strings.Contains(srv.logs.String(), secret) {
			t.Errorf("a secret reached the log")
		}
	}
}

// processScript writes a credential_process script whose n-th run prints key
// ASIAPROC<n>, a secret and token derived from n, valid for an hour.
func processScript(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "creds.sh")
	if body == "" {
		body = `n=$(cat "$0.count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.count"
exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version": 1, "AccessKeyId": "ASIAPROC%012d", "SecretAccessKey": "secret-%012d-abcdefghijklmnopqrstuvw", "SessionToken": "token-%012d", "Expiration": "%s"}\n' $n $n $n $exp`
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProcessSource(t *testing.T) {
	script := processScript(t, "")
	srv := runServerWith(t, fmt.Sprintf("roles:\n  tool:\n    source: process\n    command: [%q]\ninstance:\n  role: tool\n", script), nil)
	d := served(t, srv, "tool")
	if d.AccessKeyId != "ASIAPROC000000000001" || d.SecretAccessKey != "secret-000000000001-abcdefghijklmnopqrstuvw" {
		t.Fatalf("served %+v", d)
	}
	checkClientsSee(t, srv, "ASIAPROC000000000001")

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"creds", "rotate", "tool", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code != 0 {
		t.Fatalf("imds creds rotate: exit %d: %s", code, errOut.String())
	}
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	for served(t, srv, "tool").AccessKeyId == d.AccessKeyId && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := served(t, srv, "tool").AccessKeyId; got != "ASIAPROC000000000002" {
		t.Errorf("after imds creds rotate served %q, want ASIAPROC000000000002", got)
	}
	if !strings.Contains(out.String(), "rotated the credentials of role tool") {
		t.Errorf("imds creds rotate printed %q", out.String())
	}
}

func TestProcessSourceFailures(t *testing.T) {
	for _, tt := range []struct {
		name, body, wantLog string
	}{
		{"non-zero exit", "echo 'token expired: run sso login' >&2; exit 3", "exited with status 3: token expired: run sso login"},
		{"bad JSON", `echo '{"Version": 1, "AccessKeyId": "ASIAX", "SecretAccessKey": "leaked-secret-value"'`, "invalid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			script := processScript(t, tt.body)
			srv := runServerWith(t, fmt.Sprintf("roles:\n  tool:\n    source: process\n    command: [%q]\ninstance:\n  role: tool\n", script), nil)
			d := served(t, srv, "tool")
			if d.Code == "Success" || d.Message == "" {
				t.Errorf("served %+v, want EC2's role error", d)
			}
			logs := srv.logs.String()
			if !strings.Contains(logs, "credential refresh failed") || !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log lacks the failure %q:\n%s", tt.wantLog, logs)
			}
			if strings.Contains(logs, "leaked-secret-value") || strings.Contains(d.Message, "leaked-secret-value") {
				t.Errorf("the script's output reached the log or the response")
			}
			if _, err := goSDKKey(t, srv); err == nil {
				t.Errorf("the Go SDK got credentials from a failing source")
			}
			// The server is still serving everything else.
			if resp, err := http.Get(srv.URL + "/latest/meta-data/instance-id"); err != nil || resp.StatusCode != 200 {
				t.Errorf("instance-id after a failing source: %v %v", resp, err)
			}
		})
	}
}

// TestRotationUnderLoad rotates repeatedly while clients hammer the
// credentials path: every response is one complete set, never a mix. Each
// rotation waits until a new set is served, so that the count of sets seen
// does not depend on how fast a loaded machine runs the source.
func TestRotationUnderLoad(t *testing.T) {
	script := processScript(t, "")
	srv := runServerWith(t, fmt.Sprintf("roles:\n  tool:\n    source: process\n    command: [%q]\ninstance:\n  role: tool\n", script), nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, torn, failed atomic.Int64
	var keys sync.Map
	var distinct atomic.Int64
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(srv.URL + "/latest/meta-data/iam/security-credentials/tool")
				if err != nil {
					failed.Add(1) // the client's own trouble under load, not a torn set
					continue
				}
				var d credsDoc
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				reads.Add(1)
				n := strings.TrimPrefix(d.AccessKeyId, "ASIAPROC")
				if err != nil || d.Code != "Success" || d.SecretAccessKey != "secret-"+n+"-abcdefghijklmnopqrstuvw" || d.Token != "token-"+n {
					torn.Add(1)
					continue
				}
				if _, seen := keys.LoadOrStore(d.AccessKeyId, true); !seen {
					distinct.Add(1)
				}
			}
		}()
	}
	client := admin.NewClient(srv.d.Admin.SocketPath)
	for i := 0; i < 8; i++ {
		before := distinct.Load()
		if err := client.RotateCredentials(context.Background(), "tool"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return distinct.Load() > before })
	}
	close(stop)
	wg.Wait()
	http.DefaultClient.CloseIdleConnections()
	if torn.Load() != 0 || reads.Load() == 0 || distinct.Load() < 8 {
		t.Errorf("%d torn of %d reads (%d requests failed); %d distinct credential sets seen (want one per rotation, 8)",
			torn.Load(), reads.Load(), failed.Load(), distinct.Load())
	}
	t.Logf("%d reads, %d failed requests, %d distinct sets", reads.Load(), failed.Load(), distinct.Load())
}

func TestCredsRotateErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"creds", "rotate", "--admin-socket", shortSocketPath(t)}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "cannot reach the imds admin socket") {
		t.Errorf("without a server: exit %d, stderr %q; want a clear error", code, errOut.String())
	}
	srv := mustRunServer(t, "", "")
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"creds", "rotate", "nope", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), `no instance has role "nope"`) {
		t.Errorf("unknown role: exit %d, stderr %q", code, errOut.String())
	}
	if code := run(context.Background(), []string{"creds", "rotate", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code != 0 {
		t.Errorf("rotate all: exit %d, stderr %q", code, errOut.String())
	}
}
