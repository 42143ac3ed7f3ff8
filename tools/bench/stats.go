package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// serverStats are one server's numbers for one scenario.
type serverStats struct {
	RoundsRPS []float64 `json:"rounds_rps"`
	MedianRPS float64   `json:"median_rps"`
	// CPUPerRequest is the server's CPU time (user + system) per request,
	// in microseconds: the median over the rounds.
	CPUPerRequest float64 `json:"cpu_us_per_request"`
	// P99 is the median over the rounds of wrk's 99th latency percentile,
	// in microseconds.
	P99 float64 `json:"p99_us"`
	// Errors counts non-2xx/3xx responses and socket errors over all rounds.
	Errors int64 `json:"errors"`
	// FailedRounds counts rounds with errors or without any completed request.
	FailedRounds int `json:"failed_rounds"`
}

// scenarioResult is one row of the final table.
type scenarioResult struct {
	Scenario  string      `json:"scenario"`
	IMDS      serverStats `json:"imds"`
	Reference serverStats `json:"reference"` // the net/http constant server
	FastHTTP  serverStats `json:"fasthttp"`  // the fasthttp constant server
	// Ratio and RatioFastHTTP are imds's median req/s over each
	// reference's, 2 decimals; CPURatio is the reference's CPU time per
	// request over imds's (above 1: imds spends less).
	Ratio         float64 `json:"ratio"`
	RatioFastHTTP float64 `json:"ratio_fasthttp"`
	CPURatio      float64 `json:"cpu_ratio"`
	Target        float64 `json:"target,omitempty"` // for Ratio; 0: no target
	BelowTarget   bool    `json:"below_target"`
}

// median of xs (mean of the two middle values for an even count; 0 if empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is a/b rounded to 2 decimals, 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

func statsOf(runs []measured) serverStats {
	st := serverStats{RoundsRPS: make([]float64, 0, len(runs))}
	var cpu, p99s []float64
	for _, m := range runs {
		r := m.wrk
		st.RoundsRPS = append(st.RoundsRPS, r.RequestsPerSec)
		st.Errors += r.Non2xx3xx + r.SocketErrors.total()
		if r.hasErrors() {
			st.FailedRounds++
		}
		if r.Requests > 0 {
			cpu = append(cpu, float64(m.cpu.Microseconds())/float64(r.Requests))
		}
		if d, ok := r.Latency["99%"]; ok {
			p99s = append(p99s, float64(d.Microseconds()))
		}
	}
	st.MedianRPS = median(st.RoundsRPS)
	st.CPUPerRequest = math.Round(median(cpu)*100) / 100
	st.P99 = median(p99s)
	return st
}

// summarize turns the rounds of a scenario into its table row.
func summarize(name string, target float64, imds, ref, fast []measured) scenarioResult {
	res := scenarioResult{Scenario: name, IMDS: statsOf(imds), Reference: statsOf(ref), FastHTTP: statsOf(fast), Target: target}
	res.Ratio = ratio(res.IMDS.MedianRPS, res.Reference.MedianRPS)
	res.RatioFastHTTP = ratio(res.IMDS.MedianRPS, res.FastHTTP.MedianRPS)
	res.CPURatio = ratio(res.Reference.CPUPerRequest, res.IMDS.CPUPerRequest)
	res.BelowTarget = target > 0 && res.Ratio < target
	return res
}

// printTable writes the final table: throughput, the ratios to each
// reference, CPU time per request and p99 latency.
func printTable(w io.Writer, results []scenarioResult) {
	width := len("scenario")
	for _, r := range results {
		width = max(width, len(r.Scenario))
	}
	fmt.Fprintf(w, "\n%-*s  %9s  %9s  %9s  %7s  %7s  %6s  %22s  %9s\n", width, "scenario",
		"imds", "net/http", "fasthttp", "÷net", "÷fast", "target", "CPU µs/req imds/net/fast", "p99 imds")
	fmt.Fprintln(w, strings.Repeat("-", width+2+9+2+9+2+9+2+7+2+7+2+6+2+22+2+9))
	for _, r := range results {
		target, note := "none", ""
		if r.Target > 0 {
			target = fmt.Sprintf("%.2f", r.Target)
		}
		if r.BelowTarget {
			note = "  BELOW TARGET"
		}
		if r.IMDS.FailedRounds > 0 || r.Reference.FailedRounds > 0 || r.FastHTTP.FailedRounds > 0 {
			note += "  ERRORS"
		}
		cpu := fmt.Sprintf("%.2f/%.2f/%.2f", r.IMDS.CPUPerRequest, r.Reference.CPUPerRequest, r.FastHTTP.CPUPerRequest)
		fmt.Fprintf(w, "%-*s  %9.0f  %9.0f  %9.0f  %7.2f  %7.2f  %6s  %22s  %7.0fµs%s\n",
			width, r.Scenario, r.IMDS.MedianRPS, r.Reference.MedianRPS, r.FastHTTP.MedianRPS,
			r.Ratio, r.RatioFastHTTP, target, cpu, r.IMDS.P99, note)
	}
	fmt.Fprintln(w, "req/s are medians over the rounds; ÷net and ÷fast are imds's over each reference's; CPU is user+system time per request")
}

// writeJSON writes the results as an indented JSON document.
// report is the whole -json output.
type report struct {
	Results   []scenarioResult `json:"results"`
	Instances int              `json:"instances"`
	// RSSBytes is imds's resident set size after the load.
	RSSBytes int64         `json:"imds_rss_bytes"`
	Startup  *startupStats `json:"startup,omitempty"` // nil with -startups 0
}

func writeJSON(w io.Writer, r report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
