package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/audit"
	"github.com/imdsdev/imds/internal/ec2"
)

// runLogsCLI runs the command line as main does, printing to stdout as it
// goes (imds logs -f streams) until ctx is done.
func runLogsCLI(ctx context.Context, stdout io.Writer, args ...string) (stderr string, code int) {
	var errOut bytes.Buffer
	code = run(ctx, args, stdout, &errOut)
	return errOut.String(), code
}

func mustRunLogsCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if errOut, code := runLogsCLI(context.Background(), &out, args...); code != 0 {
		t.Fatalf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out.String()
}

var logsT0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC) // fixed instant: records formatted by imds logs, no clock

func logsRecord(inst string, i int, api, ua string) ec2.RequestRecord {
	return ec2.RequestRecord{Time: logsT0.Add(time.Duration(i) * time.Second), Instance: inst, Remote: "10.0.0.5:5555",
		Method: "GET", Path: "/latest/meta-data/instance-id", Status: 200, API: api, Latency: 1234 * time.Microsecond, UserAgent: ua}
}

// openLogsServer serves a log where web used IMDSv1 and v2only did not.
func openLogsServer(t *testing.T) (*admin.Server, *audit.Log) {
	t.Helper()
	t.Setenv("TZ", "UTC")
	log := audit.New(100)
	log.Record(logsRecord("web", 0, "v2", "aws-sdk-go-v2/1.30.0"))
	for i := range 3 {
		log.Record(logsRecord("web", 1+i, "v1", "botocore/1.29.27"))
	}
	log.Record(logsRecord("web", 4, "v1", "curl/8.5.0"))
	evil := logsRecord("web", 5, "v2", "evil\x1b[31m\tagent")
	evil.Path = "/latest/meta-data/\x1b]0;x\x07"
	log.Record(evil)
	log.Record(logsRecord("v2only", 6, "v2", "aws-sdk-go-v2/1.30.0"))
	log.Record(logsRecord("", 7, "v1", "scanner"))
	svc := admintest.NewService(admintest.Instance("web", "10.0.0.5"), admintest.Instance("v2only", "10.0.0.6"))
	srv := admintest.MustOpenServer(t, svc, nil, func(s *admin.Server) { s.Requests = log })
	return srv, log
}

func TestLogsCommand(t *testing.T) {
	srv, _ := openLogsServer(t)
	sock := "--admin-socket=" + srv.SocketPath

	out := mustRunLogsCLI(t, "logs", sock)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "TIME INSTANCE METHOD PATH STATUS API LATENCY USER-AGENT" {
		t.Errorf("header: %q", lines[0])
	}
	if got := strings.Fields(lines[1]); strings.Join(got, " ") != "2026-05-06T07:08:09.000Z web GET /latest/meta-data/instance-id 200 v2 1.23ms aws-sdk-go-v2/1.30.0" {
		t.Errorf("first row: %q", lines[1])
	}
	if !strings.Contains(lines[8], "(unknown)") || !strings.Contains(lines[8], "scanner") {
		t.Errorf("unknown requester row: %q", lines[8])
	}
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `evil\x1b[31m\tagent`) {
		t.Errorf("control characters not escaped:\n%q", out)
	}
	// Columns align: PATH starts at the same offset on every line.
	col := strings.Index(lines[0], "PATH")
	for _, l := range lines[1:] {
		if l[col] != '/' {
			t.Errorf("misaligned: %q", l)
		}
	}

	out = mustRunLogsCLI(t, "logs", "web", "-n", "2", sock)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "evil") {
		t.Errorf("web -n 2:\n%s", out)
	}

	out = mustRunLogsCLI(t, "logs", "v2only", "-o", "json", sock)
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		var d admin.RequestDocument
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if d.Instance != "v2only" || d.LatencyMS != 1.234 || d.API != "v2" {
			t.Errorf("document: %+v", d)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d JSON lines:\n%s", n, out)
	}

	var errOut string
	var code int
	if errOut, code = runLogsCLI(context.Background(), io.Discard, "logs", "nope", sock); code == 0 || !strings.Contains(errOut, `no instance named "nope"`) {
		t.Errorf("unknown instance: exit %d: %s", code, errOut)
	}
	// -o yaml: a stream of documents, one per request, in the fields of -o json.
	out = mustRunLogsCLI(t, "logs", "web", "-o", "yaml", sock)
	dec := yaml.NewDecoder(strings.NewReader(out))
	n = 0
	for {
		var d map[string]any
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("-o yaml: %v\n%s", err, out)
		}
		if d["instance"] != "web" {
			t.Errorf("-o yaml document: %v", d)
		}
		n++
	}
	if n != 6 || strings.Count(out, "---\n") != n {
		t.Errorf("-o yaml: %d documents:\n%s", n, out)
	}
	if errOut, code = runLogsCLI(context.Background(), io.Discard, "logs", "-o", "xml", sock); code == 0 || !strings.Contains(errOut, `-o/--output: must be table, json or yaml, got "xml"`) {
		t.Errorf("-o xml: exit %d: %s", code, errOut)
	}
}

// followBuffer is written by the command and read by the test.
type followBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *followBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *followBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsFollow(t *testing.T) {
	srv, log := openLogsServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out followBuffer
	done := make(chan string, 1)
	go func() {
		errOut, code := runLogsCLI(ctx, &out, "logs", "web", "-f", "-n", "1", "--admin-socket="+srv.SocketPath)
		done <- fmt.Sprintf("exit %d: %s", code, errOut)
	}()
	// Record until the follower shows a new request, then another.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; !strings.Contains(out.String(), "followed-1"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no followed request in:\n%s", out.String())
		}
		// Record once the backlog (-n 1: the "evil" request) is out, so that
		// the new request cannot become the last one of the backlog.
		if log.Followers() > 0 && strings.Contains(out.String(), "evil") {
			log.Record(logsRecord("web", 100+i, "v2", "followed-1"))
			log.Record(logsRecord("v2only", 100+i, "v2", "other-instance"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Record(logsRecord("web", 1000, "v1", "followed-2"))
	for !strings.Contains(out.String(), "followed-2") {
		if time.Now().After(deadline) {
			t.Fatalf("no second request in:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if res := <-done; res != "exit 0: " {
		t.Errorf("after interrupt: %s", res)
	}
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "evil") || strings.Contains(got, "other-instance") {
		t.Errorf("follow output:\n%s", got)
	}
}

func TestReportCommand(t *testing.T) {
	srv, _ := openLogsServer(t)
	sock := "--admin-socket=" + srv.SocketPath

	out := mustRunLogsCLI(t, "report", "web", sock)
	for _, want := range []string{
		"Requests: 6 (IMDSv2: 2, IMDSv1: 4, errors: 0)",
		"IMDSv1: 4 of 6 requests (from botocore/1.29.27, curl/8.5.0): NOT ready for IMDSv2-only (http-tokens required)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	_, rows := tableRows(t, out[strings.Index(out, "PATH"):strings.Index(out, "USER-AGENT")])
	if r := rows["/latest/meta-data/instance-id"]; strings.Join(r, " ") != "/latest/meta-data/instance-id 5 4" {
		t.Errorf("path row: %q\n%s", r, out)
	}
	_, rows = tableRows(t, out[strings.Index(out, "USER-AGENT"):])
	if r := rows["botocore/1.29.27"]; strings.Join(r, " ") != "botocore/1.29.27 3 3" {
		t.Errorf("user agent row: %q\n%s", r, out)
	}

	out = mustRunLogsCLI(t, "report", "v2only", sock)
	if !strings.Contains(out, "IMDSv1: none of 1 requests: ready for IMDSv2-only\n") {
		t.Errorf("v2-only report:\n%s", out)
	}

	var doc admin.ReportDocument
	if err := json.Unmarshal([]byte(mustRunLogsCLI(t, "report", "web", "-o", "json", sock)), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Requests != 6 || doc.V1Requests != 4 || len(doc.Paths) != 2 || doc.UserAgents[0].UserAgent != "botocore/1.29.27" {
		t.Errorf("json: %+v", doc)
	}
	if out := mustRunLogsCLI(t, "report", "web", "-o", "yaml", sock); !strings.Contains(out, "v1_requests: 4\n") {
		t.Errorf("yaml:\n%s", out)
	}

	if errOut, code := runLogsCLI(context.Background(), io.Discard, "report", "nope", sock); code == 0 || !strings.Contains(errOut, `no instance named "nope"`) {
		t.Errorf("unknown instance: exit %d: %s", code, errOut)
	}
}
