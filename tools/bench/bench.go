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
	// servers are imds, then the net/http and the fasthttp references.
	servers []server
	out     io.Writer
}

// server is one server under load.
type server struct {
	name string
	url  string
	pid  int
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

	if cfg.imdsPath == "" {
		fmt.Fprintln(stderr, "bench: building ./cmd/imds")
		if cfg.imdsPath, err = buildIMDS(ctx, tmp, stderr); err != nil {
			return false, err
		}
	}
	var procs children
	defer procs.stopAll()
	env := benchEnv{wrkPath: wrkPath, wrk: cfg.wrk, rounds: cfg.rounds, tmp: tmp, client: newHTTPClient(), out: stdout}
	if env.servers, err = startServers(ctx, cfg, tmp, env.client, &procs, stderr); err != nil {
		return false, err
	}

	scenarios, err := prepareScenarios(ctx, env.client, env.servers[0].url)
	if err != nil {
		return false, fmt.Errorf("imds setup: %w", err)
	}
	fmt.Fprintf(stdout, "%s; %d rounds per scenario (imds, net/http, fasthttp); %d instances; %d CPUs\n",
		cfg.wrk, cfg.rounds, cfg.instances, runtime.NumCPU())

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

	rss, err := rssBytes(env.servers[0].pid)
	if err != nil {
		return false, err
	}
	var startup *startupStats
	if cfg.startups > 0 {
		st, err := measureStartup(ctx, cfg.imdsPath, tmp, cfg.startups)
		if err != nil {
			return false, fmt.Errorf("start-up time: %w", err)
		}
		startup = &st
	}
	fmt.Fprintf(stdout, "\nimds RSS after the load: %.1f MiB (%d instances)\n", float64(rss)/(1<<20), cfg.instances)
	if startup != nil {
		printStartup(stdout, *startup)
	}
	printTable(stdout, results)
	if cfg.jsonOut {
		if err := writeJSON(stdout, report{Results: results, Instances: cfg.instances, RSSBytes: rss, Startup: startup}); err != nil {
			return false, err
		}
	}
	return ok, nil
}

// startServers starts imds (building it if needed) and the two reference
// servers, registers them in procs, and waits until all serve.
func startServers(ctx context.Context, cfg config, tmp string, client *http.Client, procs *children, log io.Writer) ([]server, error) {
	imdsPath := cfg.imdsPath
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate the bench binary for the reference servers: %w", err)
	}
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	var servers []server
	imds, logPath, err := startIMDS(cfg, imdsPath, addrs[0], tmp)
	if err != nil {
		return nil, err
	}
	procs.add(imds)
	fmt.Fprintf(log, "bench: imds %s (pid %d) on %s, %d instances, log: %s\n", imdsPath, imds.cmd.Process.Pid, addrs[0], cfg.instances, logPath)
	servers = append(servers, server{name: "imds", url: "http://" + addrs[0], pid: imds.cmd.Process.Pid})
	for i, kind := range []string{refNetHTTP, refFastHTTP} {
		ref, err := startChild(kind+" reference", self, []string{"-" + refServerFlag, addrs[i+1], "-" + refKindFlag, kind}, nil, nil, log)
		if err != nil {
			return nil, err
		}
		procs.add(ref)
		fmt.Fprintf(log, "bench: %s reference (pid %d) on %s\n", kind, ref.cmd.Process.Pid, addrs[i+1])
		if err := waitReady(ctx, ref, cfg.startupTimeout, dialProbe(addrs[i+1])); err != nil {
			return nil, err
		}
		servers = append(servers, server{name: kind, url: "http://" + addrs[i+1], pid: ref.cmd.Process.Pid})
	}
	if err := waitReady(ctx, imds, cfg.startupTimeout, imdsProbe(client, servers[0].url)); err != nil {
		if cfg.discardLogs {
			return nil, err
		}
		return nil, fmt.Errorf("%w\nimds log %s (end):\n%s", err, logPath, logTail(logPath, 20))
	}
	return servers, nil
}

// benchConfig is imds's config file for the benchmark: n instances, the
// first of which (bench, with a role) is the requester on 127.0.0.1; the
// others have addresses of their own, so that imds finds the requester
// among n, as on a busy host.
func benchConfig(n int) string {
	var b strings.Builder
	b.WriteString("roles:\n  bench-role: {}\ninstances:\n  - name: bench\n    source_addresses: [127.0.0.1]\n    role: bench-role\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  - name: vm-%d\n    source_addresses: [10.%d.%d.%d]\n", i, i>>16&255, i>>8&255, i&255)
	}
	return b.String()
}

// startIMDS starts `imds serve` with a fresh data directory in tmp, its
// output going to a log file in tmp (or nowhere with -discard-logs).
func startIMDS(cfg config, path, addr, tmp string) (*child, string, error) {
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create imds data directory: %w", err)
	}
	cfgPath := filepath.Join(tmp, "imds.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(cfg.instances)), 0o600); err != nil {
		return nil, "", fmt.Errorf("write imds config: %w", err)
	}
	args := []string{"serve", "--listen", addr, "--data-dir", dataDir, "--config", cfgPath}
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

// benchScenario sanity-checks sc on every server, then runs the rounds:
// in each, every server in turn, so that slow drifts of the machine affect
// them alike. ok is false if any wrk run saw errors.
func benchScenario(ctx context.Context, env benchEnv, index int, sc scenario) (res scenarioResult, ok bool, err error) {
	for i, srv := range env.servers {
		if err := sanityCheck(ctx, env.client, srv.url, sc, i == 0); err != nil {
			return res, false, fmt.Errorf("%s sanity check: %w", srv.name, err)
		}
	}
	lua, err := writeLuaScript(env.tmp, index, sc)
	if err != nil {
		return res, false, err
	}

	ok = true
	runs := make([][]measured, len(env.servers))
	for round := 1; round <= env.rounds; round++ {
		line := fmt.Sprintf("%-20s round %d/%d", sc.name, round, env.rounds)
		for i, srv := range env.servers {
			before, err := cpuTime(srv.pid)
			if err != nil {
				return res, false, err
			}
			r, err := runWrk(ctx, env.wrkPath, wrkArgs(env.wrk, srv.url, sc, lua))
			if err != nil {
				return res, false, fmt.Errorf("%s round %d: %w", srv.name, round, err)
			}
			after, err := cpuTime(srv.pid)
			if err != nil {
				return res, false, err
			}
			runs[i] = append(runs[i], measured{wrk: r, cpu: after - before})
			line += fmt.Sprintf("  %s=%.0f req/s (p99 %s)", srv.name, r.RequestsPerSec, p99(r))
			ok = reportErrors(env.out, srv.name, sc.name, round, r) && ok
		}
		fmt.Fprintln(env.out, line)
	}
	return summarize(sc.name, sc.target, runs[0], runs[1], runs[2]), ok, nil
}

// measured is one wrk run and the CPU time the server used during it.
type measured struct {
	wrk wrkResult
	cpu time.Duration
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
