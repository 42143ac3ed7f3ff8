package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// startupTarget is the most time from exec to the first answer that issue
// 15 allows, in milliseconds.
const startupTarget = 100

// startupStats are the times from the exec of `imds serve` to its first
// 200 answer.
type startupStats struct {
	Starts   int       `json:"starts"`
	TimesMS  []float64 `json:"times_ms"`
	MedianMS float64   `json:"median_ms"`
	MaxMS    float64   `json:"max_ms"`
	TargetMS float64   `json:"target_ms"`
}

// measureStartup starts `imds serve` with zero configuration (no config
// file: the default instance) n times, one after the other, and times each
// from exec to the first 200 answer to GET instance-id. A first start,
// not counted, creates the data directory, so that the disk is warm and
// the key already made for the counted ones, as on every start after a
// host's first.
func measureStartup(ctx context.Context, imdsPath, tmp string, n int) (startupStats, error) {
	dir := filepath.Join(tmp, "startup")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return startupStats{}, fmt.Errorf("create startup data directory: %w", err)
	}
	// Its own client: a connection kept from one server would not reach
	// the next.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	st := startupStats{Starts: n, TargetMS: startupTarget}
	for i := 0; i <= n; i++ {
		d, err := timeStart(ctx, client, imdsPath, dir)
		if err != nil {
			return startupStats{}, fmt.Errorf("start %d of imds: %w", i, err)
		}
		if i > 0 {
			st.TimesMS = append(st.TimesMS, float64(d.Microseconds())/1000)
		}
	}
	st.MedianMS = median(st.TimesMS)
	st.MaxMS = slices.Max(st.TimesMS)
	return st, nil
}

// timeStart execs imds once and polls it (every millisecond, for at most
// 30 s) until it answers 200; it stops the process before returning.
func timeStart(ctx context.Context, client *http.Client, imdsPath, dir string) (time.Duration, error) {
	addrs, err := freeAddrs(1)
	if err != nil {
		return 0, err
	}
	url := "http://" + addrs[0] + instanceIDPath
	args := []string{"serve", "--listen", addrs[0], "--data-dir", filepath.Join(dir, "data")}
	env := []string{"IMDS_ADMIN_SOCKET=" + filepath.Join(dir, "admin.sock")}
	start := time.Now()
	c, err := startChild("imds", imdsPath, args, env, nil, nil)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	deadline := start.Add(30 * time.Second)
	for {
		status, _, err := do(ctx, client, http.MethodGet, url, nil)
		if err == nil && status == http.StatusOK {
			return time.Since(start), nil
		}
		select {
		case <-c.done:
			return 0, fmt.Errorf("imds exited before answering: %v", c.err)
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no 200 answer within 30s (last: status %d, %v)", status, err)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
}

// printStartup prints the start-up line of the report.
func printStartup(w io.Writer, st startupStats) {
	mark := ""
	if st.MaxMS > startupTarget {
		mark = "  ABOVE TARGET"
	}
	fmt.Fprintf(w, "imds start-up (exec to first 200, zero configuration, %d starts): median %.1f ms, max %.1f ms (target < %d ms)%s\n",
		st.Starts, st.MedianMS, st.MaxMS, startupTarget, mark)
}
