package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkParams are the load settings shared by every wrk run.
type wrkParams struct {
	threads     int
	connections int
	duration    time.Duration
}

// durationArg is the duration in whole seconds, as wrk wants it (at least 1).
func (p wrkParams) durationArg() string {
	secs := int64((p.duration + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10) + "s"
}

func (p wrkParams) String() string {
	return fmt.Sprintf("wrk -t%d -c%d -d%s --latency", p.threads, p.connections, p.durationArg())
}

// socketErrors is wrk's "Socket errors:" line.
type socketErrors struct {
	Connect int64 `json:"connect"`
	Read    int64 `json:"read"`
	Write   int64 `json:"write"`
	Timeout int64 `json:"timeout"`
}

func (s socketErrors) total() int64 { return s.Connect + s.Read + s.Write + s.Timeout }

// wrkResult is what the benchmark uses from one wrk run.
type wrkResult struct {
	Requests       int64        `json:"requests"`
	RequestsPerSec float64      `json:"requests_per_sec"`
	Non2xx3xx      int64        `json:"non_2xx_3xx"`
	SocketErrors   socketErrors `json:"socket_errors"`
	// Latency percentiles from --latency ("50%", "99%", ...), when present.
	Latency map[string]time.Duration `json:"-"`
}

// hasErrors reports whether any request failed, or none completed.
func (r wrkResult) hasErrors() bool {
	return r.Requests == 0 || r.Non2xx3xx > 0 || r.SocketErrors.total() > 0
}

// errorSummary describes the failures of the run, "" if there were none.
func (r wrkResult) errorSummary() string {
	if !r.hasErrors() {
		return ""
	}
	if r.Requests == 0 {
		return "no request completed"
	}
	s := r.SocketErrors
	return fmt.Sprintf("%d non-2xx/3xx responses, socket errors: connect %d, read %d, write %d, timeout %d (of %d requests)",
		r.Non2xx3xx, s.Connect, s.Read, s.Write, s.Timeout, r.Requests)
}

// parseWrkOutput extracts the request count and rate, the error counters
// and the latency distribution from wrk's standard report. Lines wrk omits
// when they are zero (errors) leave their counters at zero.
func parseWrkOutput(out string) (wrkResult, error) {
	r := wrkResult{Latency: map[string]time.Duration{}}
	var haveRate, haveCount bool
	inLatency := false // inside the --latency percentile block
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		inLatency = inLatency && len(fields) == 2 && strings.HasSuffix(fields[0], "%")
		var err error
		switch {
		case line == "Latency Distribution":
			inLatency = true
		case inLatency:
			err = parseLatencyLine(fields, r.Latency)
		case strings.HasPrefix(line, "Requests/sec:"):
			r.RequestsPerSec, err = strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			haveRate = err == nil
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			r.Non2xx3xx, err = strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
		case strings.HasPrefix(line, "Socket errors:"):
			r.SocketErrors, err = parseSocketErrors(strings.TrimPrefix(line, "Socket errors:"))
		case len(fields) > 2 && fields[1] == "requests" && fields[2] == "in":
			r.Requests, err = strconv.ParseInt(fields[0], 10, 64)
			haveCount = err == nil
		}
		if err != nil {
			return wrkResult{}, fmt.Errorf("parse wrk line %q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return wrkResult{}, fmt.Errorf("read wrk output: %w", err)
	}
	if !haveRate || !haveCount {
		return wrkResult{}, errors.New("no \"Requests/sec:\" or \"N requests in\" line in wrk output")
	}
	return r, nil
}

// parseLatencyLine parses the fields of "99%  620.00us" into dist["99%"].
func parseLatencyLine(fields []string, dist map[string]time.Duration) error {
	d, err := parseWrkDuration(fields[1])
	if err != nil {
		return err
	}
	dist[fields[0]] = d
	return nil
}

// parseWrkDuration parses wrk's latency values: "620.00us", "1.23ms",
// "2.00s", "1.00m" (minutes, unlike Go), "1.00h".
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("latency %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("latency %q: unknown unit", s)
}

// parseSocketErrors parses " connect 0, read 3, write 0, timeout 12".
func parseSocketErrors(s string) (socketErrors, error) {
	var e socketErrors
	fields := map[string]*int64{"connect": &e.Connect, "read": &e.Read, "write": &e.Write, "timeout": &e.Timeout}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), " ")
		dst, known := fields[name]
		if !ok || !known {
			return socketErrors{}, fmt.Errorf("unexpected socket error field %q", part)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return socketErrors{}, fmt.Errorf("socket error field %q: %w", part, err)
		}
		*dst = n
	}
	return e, nil
}

// wrkArgs is the wrk command line for sc against baseURL. Scenarios that
// are not plain GETs need a Lua script (luaPath) setting method and headers;
// GETs pass their headers with -H.
func wrkArgs(p wrkParams, baseURL string, sc scenario, luaPath string) []string {
	args := []string{
		"-t" + strconv.Itoa(p.threads),
		"-c" + strconv.Itoa(p.connections),
		"-d" + p.durationArg(),
		"--latency",
	}
	if sc.needsScript() {
		args = append(args, "-s", luaPath)
	} else {
		for _, h := range sc.headers {
			args = append(args, "-H", h.name+": "+h.value)
		}
	}
	return append(args, baseURL+sc.path)
}

// luaScript is the wrk script sending sc's method and headers.
func luaScript(sc scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- generated by tools/bench for %q\n", sc.name)
	fmt.Fprintf(&b, "wrk.method = %s\n", strconv.Quote(sc.method))
	for _, h := range sc.headers {
		fmt.Fprintf(&b, "wrk.headers[%s] = %s\n", strconv.Quote(h.name), strconv.Quote(h.value))
	}
	return b.String()
}

// writeLuaScript writes luaScript(sc) into dir; it returns "" for scenarios
// that do not need one.
func writeLuaScript(dir string, index int, sc scenario) (string, error) {
	if !sc.needsScript() {
		return "", nil
	}
	path := filepath.Join(dir, fmt.Sprintf("scenario%d.lua", index))
	if err := os.WriteFile(path, []byte(luaScript(sc)), 0o600); err != nil {
		return "", fmt.Errorf("write wrk script: %w", err)
	}
	return path, nil
}

// runWrk runs wrk and parses its report.
func runWrk(ctx context.Context, wrkPath string, args []string) (wrkResult, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, wrkPath, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = stopGrace
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	r, err := parseWrkOutput(stdout.String())
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, stdout.Bytes())
	}
	return r, nil
}
