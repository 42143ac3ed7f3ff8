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
	// Errors counts non-2xx/3xx responses and socket errors over all rounds.
	Errors int64 `json:"errors"`
	// FailedRounds counts rounds with errors or without any completed request.
	FailedRounds int `json:"failed_rounds"`
}

// scenarioResult is one row of the final table.
type scenarioResult struct {
	Scenario    string      `json:"scenario"`
	IMDS        serverStats `json:"imds"`
	Reference   serverStats `json:"reference"`
	Ratio       float64     `json:"ratio"`            // imds/reference medians, 2 decimals
	Target      float64     `json:"target,omitempty"` // 0: no target
	BelowTarget bool        `json:"below_target"`
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

func statsOf(runs []wrkResult) serverStats {
	st := serverStats{RoundsRPS: make([]float64, 0, len(runs))}
	for _, r := range runs {
		st.RoundsRPS = append(st.RoundsRPS, r.RequestsPerSec)
		st.Errors += r.Non2xx3xx + r.SocketErrors.total()
		if r.hasErrors() {
			st.FailedRounds++
		}
	}
	st.MedianRPS = median(st.RoundsRPS)
	return st
}

// summarize turns the rounds of a scenario into its table row.
func summarize(name string, target float64, imds, ref []wrkResult) scenarioResult {
	res := scenarioResult{Scenario: name, IMDS: statsOf(imds), Reference: statsOf(ref), Target: target}
	res.Ratio = ratio(res.IMDS.MedianRPS, res.Reference.MedianRPS)
	res.BelowTarget = target > 0 && res.Ratio < target
	return res
}

// printTable writes the final table.
func printTable(w io.Writer, results []scenarioResult) {
	width := len("scenario")
	for _, r := range results {
		width = max(width, len(r.Scenario))
	}
	fmt.Fprintf(w, "\n%-*s  %12s  %15s  %5s  %6s\n", width, "scenario", "imds req/s", "reference req/s", "ratio", "target")
	fmt.Fprintln(w, strings.Repeat("-", width+2+12+2+15+2+5+2+6))
	for _, r := range results {
		target, note := "none", ""
		if r.Target > 0 {
			target = fmt.Sprintf("%.2f", r.Target)
		}
		if r.BelowTarget {
			note = "  BELOW TARGET"
		}
		if r.IMDS.FailedRounds > 0 || r.Reference.FailedRounds > 0 {
			note += "  ERRORS"
		}
		fmt.Fprintf(w, "%-*s  %12.0f  %15.0f  %5.2f  %6s%s\n",
			width, r.Scenario, r.IMDS.MedianRPS, r.Reference.MedianRPS, r.Ratio, target, note)
	}
}

// writeJSON writes the results as an indented JSON document.
func writeJSON(w io.Writer, results []scenarioResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"results": results}); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
