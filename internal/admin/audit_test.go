package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/audit"
	"github.com/imdsdev/imds/internal/ec2"
)

var auditT0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC) // fixed instant: records encoded and decoded, no clock

func auditRecord(inst string, i int, api string) ec2.RequestRecord {
	return ec2.RequestRecord{Time: auditT0.Add(time.Duration(i) * time.Second), Instance: inst, Remote: "10.0.0.1:40000",
		Method: "GET", Path: "/latest/meta-data/instance-id", Status: 200, API: api,
		Latency: 1500 * time.Microsecond, UserAgent: "botocore/1.29.27"}
}

// openAuditServer serves a log holding requests of cfg (3: 1 v1, 2 v2) and
// of an unknown requester.
func openAuditServer(t *testing.T) (*admin.Server, *audit.Log) {
	t.Helper()
	log := audit.New(10)
	log.Record(auditRecord("cfg", 0, "v1"))
	log.Record(auditRecord("cfg", 1, "v2"))
	r := auditRecord("cfg", 2, "v2")
	r.Path, r.Status, r.Fault = "/latest/meta-data/iam/", 404, "delay"
	log.Record(r)
	log.Record(auditRecord("", 3, "v1"))
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) { s.Requests = log })
	return srv, log
}

func TestRequests_List(t *testing.T) {
	ctx := context.Background()
	srv, _ := openAuditServer(t)
	c := admin.NewClient(srv.SocketPath)

	all, err := c.Requests(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[3].Instance != "" || all[0].Instance != "cfg" {
		t.Fatalf("all requests: %+v", all)
	}
	if want := auditRecord("cfg", 0, "v1"); all[0] != want {
		t.Errorf("round trip:\n got %+v\nwant %+v", all[0], want)
	}
	if all[2].Fault != "delay" || all[2].Status != 404 {
		t.Errorf("third: %+v", all[2])
	}
	got, err := c.Requests(ctx, "cfg", 2)
	if err != nil || len(got) != 2 || !got[1].Time.Equal(auditT0.Add(2*time.Second)) {
		t.Errorf("cfg, limit 2: %+v, %v", got, err)
	}
	// An instance of the registry without requests has none; an unknown
	// name is an error.
	if _, err := c.AddInstance(ctx, admintest.Instance("quiet", "10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Requests(ctx, "quiet", 0); err != nil || len(got) != 0 {
		t.Errorf("quiet: %v, %v", got, err)
	}
	if _, err := c.Requests(ctx, "nope", 0); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("unknown instance: %v, want ENOTFOUND", err)
	}

	// The wire format: snake_case, RFC 3339 times, latency in ms.
	hc := unixHTTP(srv.SocketPath)
	resp := do(t, hc, "GET", "http://imds/v1/requests?instance=cfg&limit=1", nil, "")
	if resp.status != 200 || resp.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, %s", resp.status, resp.body)
	}
	var raw struct {
		Requests []map[string]any `json:"requests"`
	}
	if err := json.Unmarshal([]byte(resp.body), &raw); err != nil || len(raw.Requests) != 1 {
		t.Fatalf("%s: %v", resp.body, err)
	}
	doc := raw.Requests[0]
	if doc["time"] != "2026-03-04T05:06:09.123456789Z" || doc["latency_ms"] != 1.5 || doc["user_agent"] != "botocore/1.29.27" ||
		doc["api"] != "v2" || doc["fault"] != "delay" || doc["remote"] != "10.0.0.1:40000" || doc["status"] != 404.0 {
		t.Errorf("document: %s", resp.body)
	}
	for _, bad := range []string{"limit=x", "limit=-1", "follow=maybe"} {
		if r := do(t, hc, "GET", "http://imds/v1/requests?"+bad, nil, ""); r.status != 400 || !strings.Contains(r.body, `"`+ec2.EINVALID+`"`) {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	if r := do(t, hc, "POST", "http://imds/v1/requests", nil, ""); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v %s", r.status, r.header, r.body)
	}
}

func TestRequests_Follow(t *testing.T) {
	srv, log := openAuditServer(t)
	c := admin.NewClient(srv.SocketPath)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	recs, errc := c.FollowRequests(ctx, "cfg")
	// FollowRequests returns once the server follows: nothing recorded
	// before comes, everything after does.
	log.Record(auditRecord("", 10, "v1"))
	for i := range 3 {
		log.Record(auditRecord("cfg", 11+i, "v2"))
	}
	for i := range 3 {
		select {
		case r, ok := <-recs:
			if !ok {
				t.Fatalf("stream ended: %v", <-errc)
			}
			if want := auditRecord("cfg", 11+i, "v2"); r != want {
				t.Errorf("record %d: %+v, want %+v", i, r, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no record")
		}
	}
	cancel()
	for range recs {
	}
	if err := <-errc; err != nil {
		t.Errorf("after cancel: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for log.Followers() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := log.Followers(); n != 0 {
		t.Errorf("%d followers left after the client went away", n)
	}

	// Errors come back before any record.
	recs, errc = c.FollowRequests(context.Background(), "nope")
	if _, ok := <-recs; ok {
		t.Error("records for an unknown instance")
	}
	if err := <-errc; ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("unknown instance: %v, want ENOTFOUND", err)
	}
}

func TestRequests_FollowNDJSON(t *testing.T) {
	srv, log := openAuditServer(t)
	hc := unixHTTP(srv.SocketPath)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://imds/v1/requests?follow=1", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, ct)
	}
	log.Record(auditRecord("", 20, "v1"))
	log.Record(auditRecord("cfg", 21, "v2"))
	sc := bufio.NewScanner(resp.Body)
	for _, want := range []string{"", "cfg"} {
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var d admin.RequestDocument
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil || d.Instance != want {
			t.Errorf("line %q: %v", sc.Text(), err)
		}
	}
}

// A follow stream in progress does not hold the server's Close.
func TestRequests_FollowEndsOnClose(t *testing.T) {
	log := audit.New(10)
	s := admin.NewServer()
	s.Service, s.Requests = admintest.NewService(), log
	s.SocketPath = admintest.SocketDir(t) + "/admin.sock"
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	recs, errc := admin.NewClient(s.SocketPath).FollowRequests(context.Background(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	for range recs {
	}
	if err := <-errc; ec2.ErrorCode(err) != ec2.EUNAVAILABLE {
		t.Errorf("stream ended with %v, want EUNAVAILABLE", err)
	}
}

func TestReport(t *testing.T) {
	ctx := context.Background()
	srv, _ := openAuditServer(t)
	c := admin.NewClient(srv.SocketPath)
	rep, err := c.Report(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Instance != "cfg" || rep.Requests != 3 || rep.V1Requests != 1 || rep.V2Requests != 2 || rep.Errors != 1 ||
		!rep.First.Equal(auditT0) || !rep.Last.Equal(auditT0.Add(2*time.Second)) {
		t.Errorf("report: %+v", rep)
	}
	if len(rep.Paths) != 2 || rep.Paths[0] != (ec2.PathUse{Path: "/latest/meta-data/instance-id", Requests: 2, V1: 1}) {
		t.Errorf("paths: %+v", rep.Paths)
	}
	if len(rep.UserAgents) != 1 || rep.UserAgents[0] != (ec2.AgentUse{UserAgent: "botocore/1.29.27", Requests: 3, V1: 1}) {
		t.Errorf("user agents: %+v", rep.UserAgents)
	}

	hc := unixHTTP(srv.SocketPath)
	resp := do(t, hc, "GET", "http://imds/v1/instances/cfg/report", nil, "")
	for _, key := range []string{`"v1_requests":1`, `"v2_requests":2`, `"user_agents":[`, `"paths":[`, `"first":"2026-03-04T05:06:07.123456789Z"`} {
		if !strings.Contains(resp.body, key) {
			t.Errorf("report body lacks %s: %s", key, resp.body)
		}
	}

	// An instance without requests, and one that does not exist: 404.
	if _, err := c.AddInstance(ctx, admintest.Instance("quiet", "10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Report(ctx, "quiet"); ec2.ErrorCode(err) != ec2.ENOTFOUND || !strings.Contains(ec2.ErrorMessage(err), "no requests") {
		t.Errorf("quiet: %v", err)
	}
	resp = do(t, hc, "GET", "http://imds/v1/instances/nope/report", nil, "")
	if resp.status != 404 || !strings.Contains(resp.body, `"code":"`+ec2.ENOTFOUND+`"`) || !strings.Contains(resp.body, `no instance named \"nope\"`) {
		t.Errorf("unknown instance: %d %s", resp.status, resp.body)
	}
	if r := do(t, hc, "DELETE", "http://imds/v1/instances/cfg/report", nil, ""); r.status != 405 {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
}

func TestRequests_Unsupported(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	c := admin.NewClient(srv.SocketPath)
	if _, err := c.Requests(ctx, "", 0); ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("Requests: %v, want EUNSUPPORTED", err)
	}
	if _, err := c.Report(ctx, "cfg"); ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("Report: %v, want EUNSUPPORTED", err)
	}
	recs, errc := c.FollowRequests(ctx, "")
	for range recs {
	}
	if err := <-errc; ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("Follow: %v, want EUNSUPPORTED", err)
	}
	if r := do(t, unixHTTP(srv.SocketPath), "GET", "http://imds/v1/requests", nil, ""); r.status != 501 || !strings.Contains(r.body, `"`+ec2.EUNSUPPORTED+`"`) {
		t.Errorf("GET /v1/requests: %d %s", r.status, r.body)
	}
}
