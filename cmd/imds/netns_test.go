package main

// The client side of the network namespace tests (netns_linux_test.go): the
// test binary re-executed inside a namespace, where it reads the metadata
// service with aws-sdk-go-v2 and with plain HTTP requests, and writes what it
// got to a file for the parent test. Nothing here needs Linux; on its own
// (without the environment variables below) the helper test skips.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

const (
	// netnsHelperJobEnv holds the JSON netnsHelperJob of a re-executed test
	// binary; TestNetnsGoSDKHelper skips when it is not set.
	netnsHelperJobEnv = "IMDS_NETNS_HELPER_JOB"
	// netnsHelperOutEnv names the file the helper writes its
	// netnsHelperResult to.
	netnsHelperOutEnv = "IMDS_NETNS_HELPER_OUT"
	// netnsHelperTest is the test the re-executed binary runs.
	netnsHelperTest = "TestNetnsGoSDKHelper"
	// netnsHelperUA marks the helper's plain HTTP requests in the access log.
	netnsHelperUA = "imds-netns-helper"
)

// netnsHelperJob tells the helper what to do. URL is the only address it
// talks to: the SDK gets it as its endpoint and requests are made relative
// to it.
type netnsHelperJob struct {
	URL string `json:"url"`
	// SDK runs the aws-sdk-go-v2 reads (IMDSv2 only, no fallback): the
	// instance ID, the Name tag, the user data, the role and its credentials.
	SDK bool `json:"sdk"`
	// ForeignPaths are metadata paths (relative to /latest/meta-data/) the
	// SDK client must be refused; the helper reports their HTTP status
	// instead of an error.
	ForeignPaths []string `json:"foreign_paths,omitempty"`
	// Requests are plain HTTP requests, made in order after the SDK reads.
	Requests []netnsHTTPRequest `json:"requests,omitempty"`
}

type netnsHTTPRequest struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Header map[string]string `json:"header,omitempty"`
}

type netnsHTTPResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
	Err    string `json:"err,omitempty"`
}

// netnsHelperResult is what the helper saw. Errors are reported in the
// result rather than by failing, so that the parent can show them with the
// server's log.
type netnsHelperResult struct {
	InstanceID  string `json:"instance_id"`
	NameTag     string `json:"name_tag"`
	UserData    string `json:"user_data"`
	RoleName    string `json:"role_name"`
	AccessKeyID string `json:"access_key_id"`
	// Token is the session token the SDK sent with its requests.
	Token    string   `json:"token"`
	SDKError []string `json:"sdk_errors,omitempty"`
	// ForeignStatus is the HTTP status of each of ForeignPaths (0: the
	// request did not get an HTTP answer, or was answered with success).
	ForeignStatus map[string]int      `json:"foreign_status,omitempty"`
	Responses     []netnsHTTPResponse `json:"responses,omitempty"`
}

// TestNetnsGoSDKHelper is not a test of its own: netns_linux_test.go runs the
// test binary inside a network namespace with -test.run of this name and the
// job in IMDS_NETNS_HELPER_JOB.
func TestNetnsGoSDKHelper(t *testing.T) {
	spec := os.Getenv(netnsHelperJobEnv)
	out := os.Getenv(netnsHelperOutEnv)
	if spec == "" || out == "" {
		t.Skip("helper for the network namespace tests; runs only when re-executed by them with " + netnsHelperJobEnv)
	}
	var job netnsHelperJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatalf("%s: %v", netnsHelperJobEnv, err)
	}
	if !strings.HasPrefix(job.URL, "http://") {
		t.Fatalf("job URL %q is not http://host:port", job.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := runNetnsHelperJob(ctx, job)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenRecorder is the SDK's HTTP client: a plain client (never a proxy)
// that remembers the session token the SDK sends.
type tokenRecorder struct {
	c     *http.Client
	mu    sync.Mutex
	token string
}

func (r *tokenRecorder) Do(req *http.Request) (*http.Response, error) {
	if tok := req.Header.Get("X-aws-ec2-metadata-token"); tok != "" {
		r.mu.Lock()
		r.token = tok
		r.mu.Unlock()
	}
	return r.c.Do(req)
}

func netnsHTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

func runNetnsHelperJob(ctx context.Context, job netnsHelperJob) *netnsHelperResult {
	res := &netnsHelperResult{}
	if job.SDK || len(job.ForeignPaths) > 0 {
		rec := &tokenRecorder{c: netnsHTTPClient()}
		client := sdkimds.New(sdkimds.Options{
			Endpoint:          job.URL,
			HTTPClient:        rec,
			EnableFallback:    aws.FalseTernary,
			ClientEnableState: sdkimds.ClientEnabled,
			Retryer:           aws.NopRetryer{},
		})
		fail := func(what string, err error) {
			res.SDKError = append(res.SDKError, fmt.Sprintf("%s: %v", what, err))
		}
		meta := func(path string) (string, error) {
			out, err := client.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
			if err != nil {
				return "", err
			}
			defer out.Content.Close()
			b, err := io.ReadAll(out.Content)
			return string(b), err
		}
		if job.SDK {
			var err error
			if res.InstanceID, err = meta("instance-id"); err != nil {
				fail("GetMetadata instance-id", err)
			}
			if res.NameTag, err = meta("tags/instance/Name"); err != nil {
				fail("GetMetadata tags/instance/Name", err)
			}
			if ud, err := client.GetUserData(ctx, nil); err != nil {
				fail("GetUserData", err)
			} else {
				b, err := io.ReadAll(ud.Content)
				ud.Content.Close()
				if err != nil {
					fail("GetUserData", err)
				}
				res.UserData = string(b)
			}
			if roles, err := meta("iam/security-credentials/"); err != nil {
				fail("GetMetadata iam/security-credentials/", err)
			} else {
				res.RoleName = strings.TrimSpace(roles)
			}
			provider := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client })
			if creds, err := provider.Retrieve(ctx); err != nil {
				fail("ec2rolecreds Retrieve", err)
			} else {
				res.AccessKeyID = creds.AccessKeyID
			}
		}
		for _, p := range job.ForeignPaths {
			if res.ForeignStatus == nil {
				res.ForeignStatus = map[string]int{}
			}
			_, err := meta(p)
			var re interface{ HTTPStatusCode() int }
			if errors.As(err, &re) {
				res.ForeignStatus[p] = re.HTTPStatusCode()
			} else {
				res.ForeignStatus[p] = 0
				if err != nil {
					fail("GetMetadata "+p, err)
				}
			}
		}
		rec.mu.Lock()
		res.Token = rec.token
		rec.mu.Unlock()
	}

	c := netnsHTTPClient()
	for _, r := range job.Requests {
		res.Responses = append(res.Responses, netnsDo(ctx, c, job.URL, r))
	}
	return res
}

func netnsDo(ctx context.Context, c *http.Client, base string, r netnsHTTPRequest) netnsHTTPResponse {
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.Path, nil)
	if err != nil {
		return netnsHTTPResponse{Err: err.Error()}
	}
	req.Header.Set("User-Agent", netnsHelperUA)
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return netnsHTTPResponse{Err: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	out := netnsHTTPResponse{Status: resp.StatusCode, Body: string(b)}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}
