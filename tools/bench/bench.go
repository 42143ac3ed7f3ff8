package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// imdsLogName is the name of the imds log in the temporary directory.
const imdsLogName = "imds.log"

// benchEnv is what every scenario run needs.
type benchEnv struct {
	wrkPath string
	wrk     wrkParams
	rounds  int
	tmp     string
	client  *http.Client
	imdsURL string
	refURL  string
	out     io.Writer
}

// runBench runs the whole benchmark. ok is false when some request failed
// (the errors are already reported); err is for anything else.
func runBench(ctx context.Context, cfg config, stdout, stderr io.Writer) (ok bool, err error) {
	wrkPath, err := exec.LookPath("wrk")
	if err != nil {
		return false, fmt.Errorf("%w: wrk is not installed; install it with: sudo ./scripts/deps.sh", errSkipped)
	}
	tmp, err := os.MkdirTemp("", "imds-bench-")
	if err != nil {
		return false, fmt.Errorf("create temporary directory: %w", err)
	}
	defer func() {
		// After a failure (not an interrupt) of a started imds, keep its log.
		_, statErr := os.Stat(filepath.Join(tmp, imdsLogName))
		if cfg.keepTmp || (!ok && ctx.Err() == nil && statErr == nil) {
			fmt.Fprintln(stderr, "bench: kept temporary directory", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()

	var procs children
	defer procs.stopAll()
	env := benchEnv{wrkPath: wrkPath, wrk: cfg.wrk, rounds: cfg.rounds, tmp: tmp, client: newHTTPClient(), out: stdout}
	if env.imdsURL, env.refURL, err = startServers(ctx, cfg, tmp, env.client, &procs, stderr); err != nil {
		return false, err
	}

	scenarios, err := prepareScenarios(ctx, env.client, env.imdsURL)
	if err != nil {
		return false, fmt.Errorf("imds setup: %w", err)
	}
	fmt.Fprintf(stdout, "%s; %d rounds per scenario (imds, then reference); %d CPUs\n", cfg.wrk, cfg.rounds, runtime.NumCPU())

	ok = true
	results := make([]scenarioResult, 0, len(scenarios))
	for i, sc := range scenarios {
		res, scOK, err := benchScenario(ctx, env, i, sc)
		if err != nil {
			return false, fmt.Errorf("scenario %q: %w", sc.name, err)
		}
		ok = ok && scOK
		results = append(results, res)
	}

	printTable(stdout, results)
	if cfg.jsonOut {
		if err := writeJSON(stdout, results); err != nil {
			return false, err
		}
	}
	return ok, nil
}

// startServers starts the reference server and imds (building it if
// needed), registers both in procs, and waits until both serve. It returns
// their base URLs.
func startServers(ctx context.Context, cfg config, tmp string, client *http.Client, procs *children, log io.Writer) (imdsURL, refURL string, err error) {
	imdsPath := cfg.imdsPath
	if imdsPath == "" {
		fmt.Fprintln(log, "bench: building ./cmd/imds")
		if imdsPath, err = buildIMDS(ctx, tmp, log); err != nil {
			return "", "", err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("locate the bench binary for the reference server: %w", err)
	}
	addrs, err := freeAddrs(2)
	if err != nil {
		return "", "", err
	}
	imdsAddr, refAddr := addrs[0], addrs[1]

	ref, err := startChild("reference server", self, []string{"-" + refServerFlag, refAddr}, nil, nil, log)
	if err != nil {
		return "", "", err
	}
	procs.add(ref)

	imds, logPath, err := startIMDS(cfg, imdsPath, imdsAddr, tmp)
	if err != nil {
		return "", "", err
	}
	procs.add(imds)
	fmt.Fprintf(log, "bench: imds %s (pid %d) on %s, log: %s\n", imdsPath, imds.cmd.Process.Pid, imdsAddr, logPath)
	fmt.Fprintf(log, "bench: reference (pid %d) on %s\n", ref.cmd.Process.Pid, refAddr)

	if err := waitReady(ctx, ref, cfg.startupTimeout, dialProbe(refAddr)); err != nil {
		return "", "", err
	}
	imdsURL = "http://" + imdsAddr
	if err := waitReady(ctx, imds, cfg.startupTimeout, imdsProbe(client, imdsURL)); err != nil {
		if cfg.discardLogs {
			return "", "", err
		}
		return "", "", fmt.Errorf("%w\nimds log %s (end):\n%s", err, logPath, logTail(logPath, 20))
	}
	return imdsURL, "http://" + refAddr, nil
}

// startIMDS starts `imds serve` with a fresh data directory in tmp, its
// output going to a log file in tmp (or nowhere with -discard-logs).
func startIMDS(cfg config, path, addr, tmp string) (*child, string, error) {
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create imds data directory: %w", err)
	}
	args := []string{"serve", "--listen", addr, "--data-dir", dataDir}
	// An admin socket of its own, so that a server already running on this
	// machine does not stop the benchmark (the environment variable is
	// ignored by builds from before the admin API, for A/B runs).
	env := []string{"IMDS_ADMIN_SOCKET=" + filepath.Join(tmp, "admin.sock")}
	if cfg.discardLogs {
		c, err := startChild("imds", path, args, env, nil, nil)
		return c, "(discarded)", err
	}
	logPath := filepath.Join(tmp, imdsLogName)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("create imds log: %w", err)
	}
	defer f.Close() // the child has its own descriptor
	c, err := startChild("imds", path, args, env, f, f)
	return c, logPath, err
}

// benchScenario sanity-checks sc on both servers, then runs the rounds.
// ok is false if any wrk run saw errors.
func benchScenario(ctx context.Context, env benchEnv, index int, sc scenario) (res scenarioResult, ok bool, err error) {
	if err := sanityCheck(ctx, env.client, env.imdsURL, sc, true); err != nil {
		return res, false, fmt.Errorf("imds sanity check: %w", err)
	}
	if err := sanityCheck(ctx, env.client, env.refURL, sc, false); err != nil {
		return res, false, fmt.Errorf("reference sanity check: %w", err)
	}
	lua, err := writeLuaScript(env.tmp, index, sc)
	if err != nil {
		return res, false, err
	}

	ok = true
	var imdsRuns, refRuns []wrkResult
	for round := 1; round <= env.rounds; round++ {
		ri, err := runWrk(ctx, env.wrkPath, wrkArgs(env.wrk, env.imdsURL, sc, lua))
		if err != nil {
			return res, false, fmt.Errorf("imds round %d: %w", round, err)
		}
		rr, err := runWrk(ctx, env.wrkPath, wrkArgs(env.wrk, env.refURL, sc, lua))
		if err != nil {
			return res, false, fmt.Errorf("reference round %d: %w", round, err)
		}
		imdsRuns, refRuns = append(imdsRuns, ri), append(refRuns, rr)
		fmt.Fprintf(env.out, "%-20s round %d/%d  imds=%.0f req/s (p99 %s)  ref=%.0f req/s (p99 %s)\n",
			sc.name, round, env.rounds, ri.RequestsPerSec, p99(ri), rr.RequestsPerSec, p99(rr))
		ok = reportErrors(env.out, "imds", sc.name, round, ri) && ok
		ok = reportErrors(env.out, "reference", sc.name, round, rr) && ok
	}
	return summarize(sc.name, sc.target, imdsRuns, refRuns), ok, nil
}

// reportErrors prints a loud line if r saw errors; it reports whether r was clean.
func reportErrors(w io.Writer, server, scenario string, round int, r wrkResult) bool {
	if !r.hasErrors() {
		return true
	}
	fmt.Fprintf(w, "ERROR: %s, %q round %d: %s\n", server, scenario, round, r.errorSummary())
	return false
}

// p99 formats the 99th latency percentile of r, "?" if unknown.
func p99(r wrkResult) string {
	d, ok := r.Latency["99%"]
	if !ok {
		return "?"
	}
	return d.Round(time.Microsecond).String()
}

// logTail returns the last n lines of the file at path, indented, or a note
// saying why it cannot.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
