package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imdsdev/imds/internal/ec2"
)

// twoInstanceServer serves instance "a" on 127.0.0.1 and "b" on ::1.
func twoInstanceServer(t *testing.T) (a, b *testServer) {
	t.Helper()
	cfg := "instances:\n  - name: a\n    source_addresses: [127.0.0.1]\n  - name: b\n    source_addresses: [\"::1\"]\n"
	srv, err := openServer(t, cfg, listen("127.0.0.1:0", "[::1]:0"))
	if err != nil {
		t.Skipf("cannot listen on ::1 here: %v", err)
	}
	return srv.at(0), srv.at(1)
}

func setFaults(t *testing.T, srv *testServer, name string, f ec2.Faults) {
	t.Helper()
	if err := srv.d.Registry.SetFaults(context.Background(), name, f); err != nil {
		t.Fatal(err)
	}
}

// TestFaultsSeenByClients shows each fault as a real client experiences it.
func TestFaultsSeenByClients(t *testing.T) {
	srv := mustRunServer(t, "", "")
	ctx := context.Background()
	client := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	// requests counts the recorded answers with status, on any path.
	requests := func(status int) int {
		recs, _ := srv.d.Admin.Requests.Requests(ctx, "default", 0)
		n := 0
		for _, r := range recs {
			if r.Status == status {
				n++
			}
		}
		return n
	}

	t.Run("Go SDK retries on 503", func(t *testing.T) {
		// Every request fails until the fault is cleared in the middle of the
		// call: the SDK succeeds only because it retries.
		setFaults(t, srv, "default", ec2.Faults{ErrorRate: 1})
		done := make(chan error, 1)
		go func() {
			_, err := client.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: "instance-id"})
			done <- err
		}()
		deadline := time.Now().Add(3 * time.Second)
		for requests(503) < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		setFaults(t, srv, "default", ec2.Faults{})
		if err := <-done; err != nil || requests(503) == 0 || requests(200) == 0 {
			t.Errorf("err=%v after %d answers of 503 and %d of 200; want success after a retry", err, requests(503), requests(200))
		}
	})

	t.Run("latency measured by the client", func(t *testing.T) {
		setFaults(t, srv, "default", ec2.Faults{Latency: 200 * time.Millisecond})
		start := time.Now()
		if _, err := client.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: "instance-id"}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		setFaults(t, srv, "default", ec2.Faults{})
		if took < 200*time.Millisecond {
			t.Errorf("the SDK call took %v, want at least the 200ms fault", took)
		}
		t.Logf("Go SDK GetMetadata with a 200ms latency fault took %v (token PUT and GET)", took)
	})

	t.Run("botocore falls back to IMDSv1 when the token endpoint refuses", func(t *testing.T) {
		requirePythonModule(t, "botocore", "python3-botocore")
		setFaults(t, srv, "default", ec2.Faults{Token: ec2.TokenRefuse})
		defer setFaults(t, srv, "default", ec2.Faults{})
		if _, err := botocoreKey(t, srv); err != nil {
			t.Fatalf("botocore did not get credentials over IMDSv1: %v", err)
		}
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{"report", "default", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code != 0 {
			t.Fatalf("imds report: %s", errOut.String())
		}
		if !strings.Contains(out.String(), "NOT ready for IMDSv2-only") || !strings.Contains(out.String(), "Botocore") {
			t.Errorf("imds report after botocore's IMDSv1 fallback:\n%s", out.String())
		}
		if !strings.Contains(srv.logs.String(), "fault=token-refuse") {
			t.Errorf("the access log does not show the fault")
		}
	})

	t.Run("botocore extends expired credentials", func(t *testing.T) {
		requirePythonModule(t, "botocore", "python3-botocore")
		setFaults(t, srv, "default", ec2.Faults{ExpiredCredentials: true})
		defer setFaults(t, srv, "default", ec2.Faults{})
		stdout, stderr, err := runPyClient(t, srv, "botocore_client.py")
		if err != nil {
			t.Fatalf("botocore: %v\n%s", err, stderr)
		}
		var out struct {
			Expiry  string `json:"expiry"`
			Session struct {
				Expiry string `json:"expiry"`
			} `json:"session"`
		}
		if err := json.Unmarshal(stdout, &out); err != nil {
			t.Fatal(err)
		}
		served, _ := time.Parse(time.RFC3339, served(t, srv, ec2.DefaultRoleName).Expiration)
		extended, _ := time.Parse(time.RFC3339, out.Session.Expiry)
		if !served.Before(time.Now()) || !extended.After(time.Now().Add(5*time.Minute)) {
			t.Errorf("served Expiration %v, botocore's %s: want botocore to extend expired credentials (static stability)", served, out.Session.Expiry)
		}
		t.Logf("served Expiration %s; botocore extended it to %s", served.Format(time.RFC3339), out.Session.Expiry)
	})

	t.Run("Go SDK extends expired credentials when the refresh fails", func(t *testing.T) {
		// Expired credentials first, then a failing service: the SDK's cache
		// keeps the old key and pushes its expiry 5-15 minutes out.
		cache := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }))
		setFaults(t, srv, "default", ec2.Faults{ExpiredCredentials: true})
		first, err := cache.Retrieve(ctx)
		if err != nil || !first.Expires.Before(time.Now()) {
			t.Fatalf("first retrieve: %v, expires %v; want expired credentials", err, first.Expires)
		}
		setFaults(t, srv, "default", ec2.Faults{ErrorRate: 1})
		defer setFaults(t, srv, "default", ec2.Faults{})
		again, err := cache.Retrieve(ctx)
		if err != nil || again.AccessKeyID != first.AccessKeyID || again.Expires.Before(time.Now().Add(4*time.Minute)) {
			t.Errorf("after a failed refresh: %v, key %s, expires %v; want the old key extended", err, again.AccessKeyID, again.Expires)
		}
		t.Logf("Go SDK extended expired credentials to %v after the refresh failed", again.Expires.Round(time.Second))
	})

	t.Run("instance get shows the faults", func(t *testing.T) {
		setFaults(t, srv, "default", ec2.Faults{Latency: 5 * time.Millisecond, ErrorRate: 0.1})
		defer setFaults(t, srv, "default", ec2.Faults{})
		var out, errOut bytes.Buffer
		run(ctx, []string{"instance", "get", "default", "-o", "json", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut)
		var doc map[string]any
		json.Unmarshal(out.Bytes(), &doc)
		if doc["faults"] != "latency=5ms,errors=0.1×503" {
			t.Errorf("instance get shows faults %v", doc["faults"])
		}
	})
}

// TestFaultIsolation hammers instance a, which has a 300ms latency and a
// 50% error fault, while measuring instance b: b stays fast and error-free.
func TestFaultIsolation(t *testing.T) {
	a, b := twoInstanceServer(t)
	setFaults(t, a, "a", ec2.Faults{Latency: 300 * time.Millisecond, ErrorRate: 0.5})
	if _, err := a.d.Registry.TriggerEvent(context.Background(), "a", ec2.EventRequest{Type: "spot"}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get(a.URL + "/latest/meta-data/instance-id"); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	client := sdkimds.New(sdkimds.Options{Endpoint: b.URL, EnableFallback: aws.FalseTernary})
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		start := time.Now()
		if _, err := client.GetMetadata(context.Background(), &sdkimds.GetMetadataInput{Path: "instance-id"}); err != nil {
			t.Errorf("instance b failed while a had faults: %v", err)
		}
		lat = append(lat, time.Since(start))
	}
	close(stop)
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("instance b while a is hammered with faults: p50 %v, p99 %v over %d calls (a's latency fault: 300ms)", p50, p99, len(lat))
	if p99 >= 300*time.Millisecond {
		t.Errorf("instance b's p99 %v reached instance a's latency fault", p99)
	}
	if resp, err := http.Get(b.URL + "/latest/meta-data/spot/instance-action"); err != nil || resp.StatusCode != 404 {
		t.Errorf("a's spot notice leaked to b: %v %v", resp, err)
	}
}

// TestFaultCLIAgainstServer sets and clears faults with the CLI.
func TestFaultCLIAgainstServer(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append(args, "--admin-socket", sock), &out, &errOut); code != 0 {
			t.Fatalf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	cli("fault", "set", "default", "--token", "refuse")
	req, _ := http.NewRequest("PUT", srv.URL+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("token PUT after imds fault set --token refuse: %v %v", resp, err)
	}
	resp.Body.Close()
	if out := cli("fault", "get", "default"); !strings.Contains(out, "token=refuse") {
		t.Errorf("imds fault get: %q", out)
	}
	cli("fault", "set", "--all", "--error-rate", "1", "--error-status", "500")
	if code, _ := body(t, srv.URL+"/latest/meta-data/instance-id"); code != 500 {
		t.Errorf("with --all --error-rate 1: status %d, want 500", code)
	}
	cli("fault", "clear", "--all")
	cli("fault", "clear", "default")
	if code, _ := body(t, srv.URL+"/latest/meta-data/instance-id"); code != 200 {
		t.Errorf("after clear: status %d", code)
	}
}
