package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	imdsconfig "github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// Real outputs of wrk 4.1.0 (Debian 12).
const (
	// Against the reference server.
	wrkClean = `Running 2s test @ http://127.0.0.1:18081/latest/meta-data/instance-id
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   630.29us    1.04ms  11.01ms   88.92%
    Req/Sec    94.28k     6.78k  101.33k    85.00%
  Latency Distribution
     50%  233.00us
     75%  582.00us
     90%    1.84ms
     99%    5.07ms
  187422 requests in 2.00s, 21.63MB read
Requests/sec:  93626.74
Transfer/sec:     10.80MB
`
	// Against a server answering 1 request in 7 with 401 and closing 1
	// connection in 50.
	wrkErrors = `Running 2s test @ http://127.0.0.1:18082/mixed
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   679.40us    1.03ms   8.76ms   87.80%
    Req/Sec    87.23k     3.50k   93.26k    52.38%
  Latency Distribution
     50%  288.00us
     75%  549.00us
     90%    2.16ms
     99%    4.49ms
  181948 requests in 2.10s, 24.24MB read
  Socket errors: connect 0, read 3713, write 0, timeout 0
  Non-2xx or 3xx responses: 25993
Requests/sec:  86629.03
Transfer/sec:     11.54MB
`
	// Against a server that never answers, without --latency.
	wrkNothing = `Running 3s test @ http://127.0.0.1:18082/hang
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  0 requests in 3.01s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
`
)

func TestParseWrkOutput(t *testing.T) {
	tests := []struct {
		name       string
		out        string
		want       wrkResult
		wantP99    time.Duration
		wantErrors bool
	}{
		{
			name:    "clean",
			out:     wrkClean,
			want:    wrkResult{Requests: 187422, RequestsPerSec: 93626.74},
			wantP99: 5070 * time.Microsecond,
		},
		{
			name: "errors",
			out:  wrkErrors,
			want: wrkResult{
				Requests: 181948, RequestsPerSec: 86629.03, Non2xx3xx: 25993,
				SocketErrors: socketErrors{Read: 3713},
			},
			wantP99:    4490 * time.Microsecond,
			wantErrors: true,
		},
		{
			name:       "nothing completed",
			out:        wrkNothing,
			want:       wrkResult{},
			wantErrors: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrkOutput(tt.out)
			if err != nil {
				t.Fatalf("parseWrkOutput: %v", err)
			}
			if got.Requests != tt.want.Requests || got.RequestsPerSec != tt.want.RequestsPerSec ||
				got.Non2xx3xx != tt.want.Non2xx3xx || got.SocketErrors != tt.want.SocketErrors {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if p := got.Latency["99%"]; p != tt.wantP99 {
				t.Errorf("p99 = %v, want %v", p, tt.wantP99)
			}
			if got.hasErrors() != tt.wantErrors {
				t.Errorf("hasErrors() = %v, want %v (%s)", got.hasErrors(), tt.wantErrors, got.errorSummary())
			}
		})
	}
}

func TestParseWrkOutputLatencyDistribution(t *testing.T) {
	got, err := parseWrkOutput(wrkClean)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"50%": 233 * time.Microsecond, "75%": 582 * time.Microsecond,
		"90%": 1840 * time.Microsecond, "99%": 5070 * time.Microsecond,
	}
	if len(got.Latency) != len(want) {
		t.Fatalf("latency = %v, want %v", got.Latency, want)
	}
	for k, v := range want {
		if got.Latency[k] != v {
			t.Errorf("latency[%s] = %v, want %v", k, got.Latency[k], v)
		}
	}
}

func TestParseWrkOutputRejects(t *testing.T) {
	for name, out := range map[string]string{
		"empty":          "",
		"connect failed": "unable to connect to 127.0.0.1:1 Connection refused\n",
		"no rate":        strings.Replace(wrkClean, "Requests/sec:  93626.74\n", "", 1),
		"bad rate":       strings.Replace(wrkClean, "93626.74", "lots", 1),
		"bad socket":     strings.Replace(wrkErrors, "read 3713", "reads 3713", 1),
		"bad latency":    strings.Replace(wrkClean, "5.07ms", "5.07fortnights", 1),
	} {
		if r, err := parseWrkOutput(out); err == nil {
			t.Errorf("%s: parseWrkOutput = %+v, want an error", name, r)
		}
	}
}

func TestParseSocketErrors(t *testing.T) {
	got, err := parseSocketErrors(" connect 1, read 2, write 3, timeout 4")
	if err != nil {
		t.Fatal(err)
	}
	if want := (socketErrors{Connect: 1, Read: 2, Write: 3, Timeout: 4}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.total() != 10 {
		t.Errorf("total = %d, want 10", got.total())
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"620.00us": 620 * time.Microsecond,
		"1.23ms":   1230 * time.Microsecond,
		"2.00s":    2 * time.Second,
		"1.50m":    90 * time.Second,
		"1.00h":    time.Hour,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{90000, 120000, 100000}, 100000},
	} {
		in := slices.Clone(tt.in)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median modified its argument: %v, was %v", tt.in, in)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct{ a, b, want float64 }{
		{90000, 100000, 0.90},
		{89499, 100000, 0.89},
		{89500, 100000, 0.90}, // rounds half away from zero
		{150000, 100000, 1.50},
		{1, 3, 0.33},
		{100, 0, 0},
	} {
		if got := ratio(tt.a, tt.b); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("ratio(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// rps are runs of 1,000 requests at these rates, each costing the server
// 10 ms of CPU (10 µs a request).
func rps(xs ...float64) []measured {
	rs := make([]measured, len(xs))
	for i, x := range xs {
		rs[i] = measured{wrk: wrkResult{Requests: 1000, RequestsPerSec: x}, cpu: 10 * time.Millisecond}
	}
	return rs
}

func TestSummarize(t *testing.T) {
	got := summarize("v1", 0.90, rps(80, 95, 85), rps(100, 110, 90), rps(170, 160, 150))
	if got.IMDS.MedianRPS != 85 || got.Reference.MedianRPS != 100 || got.Ratio != 0.85 || !got.BelowTarget ||
		got.RatioFastHTTP != 0.53 || got.IMDS.CPUPerRequest != 10 || got.CPURatio != 1 {
		t.Errorf("below target: got %+v", got)
	}
	if got := summarize("v1", 0.90, rps(95, 91, 99), rps(100, 100, 100), rps(160)); got.Ratio != 0.95 || got.BelowTarget {
		t.Errorf("above target: got %+v", got)
	}
	if got := summarize("put", 0, rps(10), rps(100), rps(160)); got.Ratio != 0.10 || got.BelowTarget {
		t.Errorf("no target: got %+v", got)
	}
	cheaper := rps(100)
	cheaper[0].cpu = 5 * time.Millisecond
	if got := summarize("cpu", 0, cheaper, rps(100), rps(100)); got.IMDS.CPUPerRequest != 5 || got.CPURatio != 2 {
		t.Errorf("CPU per request: got %+v", got)
	}

	withErrors := rps(100, 100)
	withErrors[1].wrk.Non2xx3xx, withErrors[1].wrk.SocketErrors.Read = 5, 2
	got = summarize("errs", 0.90, withErrors, rps(100, 100), rps(100, 100))
	if got.IMDS.Errors != 7 || got.IMDS.FailedRounds != 1 || got.Reference.FailedRounds != 0 {
		t.Errorf("errors: got %+v", got)
	}
}

func TestPrintTable(t *testing.T) {
	var b strings.Builder
	printTable(&b, []scenarioResult{
		summarize("v1 GET instance-id", 0.90, rps(80), rps(100), rps(160)),
		summarize("token PUT", 0, rps(50), rps(100), rps(160)),
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header, rule, 2 rows and the legend, got:\n%s", b.String())
	}
	if !strings.Contains(lines[2], "0.80") || !strings.Contains(lines[2], "BELOW TARGET") {
		t.Errorf("row 1 = %q, want ratio 0.80 and BELOW TARGET", lines[2])
	}
	if !strings.Contains(lines[3], "none") || strings.Contains(lines[3], "BELOW") {
		t.Errorf("row 2 = %q, want target none and no BELOW TARGET", lines[3])
	}
}

func TestWrkArgs(t *testing.T) {
	p := wrkParams{threads: 1, connections: 32, duration: 5 * time.Second}
	get := scenario{name: "g", method: http.MethodGet, path: "/p", headers: []header{{"X-A", "b"}}}
	want := []string{"-t1", "-c32", "-d5s", "--latency", "-H", "X-A: b", "http://h/p"}
	if got := wrkArgs(p, "http://h", get, ""); !slices.Equal(got, want) {
		t.Errorf("GET: got %q, want %q", got, want)
	}
	put := scenario{name: "p", method: http.MethodPut, path: "/t", headers: []header{{"X-A", "b"}}}
	want = []string{"-t1", "-c32", "-d5s", "--latency", "-s", "/tmp/s.lua", "http://h/t"}
	if got := wrkArgs(p, "http://h", put, "/tmp/s.lua"); !slices.Equal(got, want) {
		t.Errorf("PUT: got %q, want %q", got, want)
	}
	if got := (wrkParams{duration: 1500 * time.Millisecond}).durationArg(); got != "2s" {
		t.Errorf("durationArg(1.5s) = %q, want 2s", got)
	}
}

func TestLuaScript(t *testing.T) {
	got := luaScript(scenario{name: "token PUT", method: http.MethodPut, headers: []header{{tokenTTLHeader, tokenTTL}}})
	for _, want := range []string{
		`wrk.method = "PUT"`,
		`wrk.headers["X-aws-ec2-metadata-token-ttl-seconds"] = "21600"`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("script lacks %s:\n%s", want, got)
		}
	}
}

func TestRefHandler(t *testing.T) {
	srv := httptest.NewServer(refHandler())
	defer srv.Close()
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/any/path", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || string(body) != refBody || len(body) != 19 ||
			resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s: %d %q %q", method, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}

func TestFastRefHandler(t *testing.T) {
	ln := fasthttputil.NewInmemoryListener()
	defer ln.Close()
	go (&fasthttp.Server{Handler: fastRefHandler}).Serve(ln)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.Dial() }}}
	resp, err := c.Get("http://ref/any/path")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != refBody || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("fasthttp reference: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestBenchConfig(t *testing.T) {
	f, err := imdsconfig.Parse("bench.yaml", []byte(benchConfig(1000)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	insts, err := f.BuildInstances(ec2.DeriveOptions{Seed: []byte("bench")})
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1000 || insts[0].Name != "bench" || insts[0].SourceAddrs[0] != "127.0.0.1" || insts[0].Role == nil {
		t.Errorf("bench config: %d instances, first %+v", len(insts), insts[0])
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags("bench", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 3 || cfg.wrk != (wrkParams{threads: 1, connections: 32, duration: 5 * time.Second}) || cfg.refServer != "" || cfg.startups != 20 {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, args := range [][]string{
		{"-rounds", "0"}, {"-duration", "100ms"}, {"-threads", "4", "-connections", "2"}, {"extra"}, {"-startups", "-1"},
	} {
		if _, err := parseFlags("bench", args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): want an error", args)
		}
	}

	var usage strings.Builder
	if _, err := parseFlags("bench", []string{"-h"}, &usage); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	if strings.Contains(usage.String(), refServerFlag) || !strings.Contains(usage.String(), "-rounds") {
		t.Errorf("usage must list -rounds and hide -%s:\n%s", refServerFlag, usage.String())
	}
}

func TestFirstLine(t *testing.T) {
	if got, err := firstLine([]byte("\nmy-role\nother\n")); err != nil || got != "my-role" {
		t.Errorf("firstLine = %q, %v", got, err)
	}
	if _, err := firstLine([]byte(" \n")); err == nil {
		t.Error("firstLine of blank listing: want an error")
	}
}

// The JSON report carries the table's rows, the RSS and the start-up
// figures under stable names.
func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	st := &startupStats{Starts: 2, TimesMS: []float64{10, 30}, MedianMS: 20, MaxMS: 30, TargetMS: startupTarget}
	if err := writeJSON(&b, report{Results: []scenarioResult{{Scenario: "v1"}}, Instances: 1000, RSSBytes: 42 << 20, Startup: st}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results   []struct{ Scenario string }
		Instances int
		RSS       int64 `json:"imds_rss_bytes"`
		Startup   struct {
			Starts   int
			MedianMS float64 `json:"median_ms"`
			TargetMS float64 `json:"target_ms"`
		}
	}
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Results) != 1 || got.Instances != 1000 || got.RSS != 42<<20 || got.Startup.Starts != 2 || got.Startup.TargetMS != 100 {
		t.Errorf("JSON report: %+v\n%s", got, b.String())
	}
}

// measureStartup times real starts of imds (built here) to its first
// answer; the figures themselves are not checked (no timings in unit
// tests), only that there is one per start.
func TestMeasureStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds imds")
	}
	tmp := t.TempDir()
	path, err := buildIMDS(t.Context(), tmp, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := measureStartup(t.Context(), path, tmp, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Starts != 2 || len(st.TimesMS) != 2 || st.MaxMS < st.MedianMS || st.MedianMS <= 0 {
		t.Errorf("startup stats %+v", st)
	}
	var out strings.Builder
	printStartup(&out, st)
	if !strings.Contains(out.String(), "2 starts") {
		t.Errorf("start-up line %q", out.String())
	}
}
