// Command bench measures the HTTP throughput of `imds serve` and compares it
// with the fastest possible references on the same machine, in the same run.
//
// # What it measures
//
// Three servers run side by side on 127.0.0.1, each in its own process:
//
//   - imds: the real `imds serve`, built from ./cmd/imds (or -imds PATH), with
//     a fresh data directory and a config of -instances instances (1,000 by
//     default): the requester, on 127.0.0.1, is one of them, found by its
//     address; the access log and the request record are on, as by default;
//   - net/http: this program re-executed in a hidden mode, a minimal net/http
//     server answering every request with the constant 19-byte body
//     "i-0123456789abcdef0". It does no routing, no token checks and no
//     lookups: the ceiling of any net/http server on this machine;
//   - fasthttp: the same constant from a valyala/fasthttp server, which
//     shows how far the machine's limit is beyond net/http.
//
// wrk (https://github.com/wg/wrk) drives three scenarios, with identical
// requests against every server:
//
//  1. "v1 GET instance-id": GET /latest/meta-data/instance-id, no headers;
//  2. "v2 GET credentials": GET /latest/meta-data/iam/security-credentials/ROLE
//     with an X-aws-ec2-metadata-token header (a real token, obtained first);
//  3. "token PUT": PUT /latest/api/token with
//     X-aws-ec2-metadata-token-ttl-seconds: 21600 (sent through a Lua script).
//
// Each scenario runs -rounds times; each round benchmarks imds, then the
// references, back to back, so that slow drifts of the machine (thermal,
// other load) affect all alike. Before a scenario, one request is checked
// with a Go client (status 200, non-empty body, credentials JSON). Around
// each wrk run the server's CPU time (user + system, from /proc/PID/stat)
// is read: CPU time per request is much steadier than requests per second
// on a shared machine.
//
// # Reading the output
//
// One line per round gives each server's requests per second and 99th
// latency percentile. The final table gives, per scenario, the median over
// the rounds of each server, imds's ratio to each reference (1.00: as fast
// as a constant answer), the CPU time per request of each server and imds's
// p99. Every scenario's target is 1.00 of the net/http constant server
// (issue 15); rows under it are marked BELOW TARGET, which does not change
// the exit status. imds's RSS after the load is printed too, and its
// start-up time: median and maximum over -startups starts of `imds serve`
// with zero configuration (after one uncounted start that creates the
// data directory), from exec to the first 200 answer (target: 100 ms).
//
// Any non-2xx/3xx response or socket error (against any server) is
// reported loudly and makes the exit status 1: numbers from a run with
// errors do not mean anything. If wrk is not installed the benchmark is
// skipped (exit status 0); install it with scripts/deps.sh.
//
// # Usage
//
//	go run ./tools/bench [flags]        # or: make bench BENCHFLAGS="..."
//
// Flags: -duration (per wrk run, default 5s), -rounds (3), -connections
// (32), -threads (1), -instances (1000), -imds PATH (prebuilt binary instead
// of building ./cmd/imds), -startups (20: how often imds is started, with
// zero configuration, to time exec to its first 200 answer; 0 skips it),
// -json (also print the results, RSS and start-up times as JSON),
// -discard-logs (do not keep the imds log), -keep (keep the temporary
// directory), -startup-timeout (30s). The temporary directory holds the imds
// binary, its config, data directory and log; it is removed at exit, unless
// -keep is given or the run failed after imds started (then its log is
// worth reading).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

// refServerFlag and refKindFlag are the hidden flags that turn this
// program into a reference server.
const (
	refServerFlag = "ref-server"
	refKindFlag   = "ref-kind"
)

// config holds the command-line settings.
type config struct {
	imdsPath       string
	wrk            wrkParams
	rounds         int
	jsonOut        bool
	discardLogs    bool
	keepTmp        bool
	startupTimeout time.Duration
	instances      int    // instances in imds's config; the requester is one of them
	startups       int    // starts of imds timed for the start-up figure; 0: none
	refServer      string // non-empty: serve as the reference on this address
	refKind        string // net/http or fasthttp
}

// errSkipped reports that the benchmark could not run for a reason that is
// not a failure (missing wrk).
var errSkipped = errors.New("benchmark skipped")

func main() {
	os.Exit(run(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit, returning the exit status.
func run(name string, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(name, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.refServer != "" {
		if err := runRefServer(ctx, cfg.refKind, cfg.refServer); err != nil {
			fmt.Fprintln(stderr, "bench: reference server:", err)
			return 1
		}
		return 0
	}

	ok, err := runBench(ctx, cfg, stdout, stderr)
	switch {
	case errors.Is(err, errSkipped):
		fmt.Fprintln(stderr, "bench:", err)
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "bench: interrupted")
		return 130
	case err != nil:
		fmt.Fprintln(stderr, "bench: FAILED:", err)
		return 1
	case !ok:
		fmt.Fprintln(stderr, "bench: FAILED: errors during the benchmark (see ERROR lines above)")
		return 1
	}
	return 0
}

// parseFlags parses and validates the command line.
func parseFlags(name string, args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.imdsPath, "imds", "", "use this imds binary instead of building ./cmd/imds")
	fs.DurationVar(&cfg.wrk.duration, "duration", 5*time.Second, "duration of each wrk run (whole seconds)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds per scenario (each runs imds then the reference)")
	fs.IntVar(&cfg.wrk.connections, "connections", 32, "wrk connections (-c)")
	fs.IntVar(&cfg.wrk.threads, "threads", 1, "wrk threads (-t)")
	fs.BoolVar(&cfg.jsonOut, "json", false, "also print the final results as JSON")
	fs.BoolVar(&cfg.discardLogs, "discard-logs", false, "discard the log of imds instead of writing it to the temporary directory")
	fs.BoolVar(&cfg.keepTmp, "keep", false, "keep the temporary directory (binary, data, log)")
	fs.DurationVar(&cfg.startupTimeout, "startup-timeout", 30*time.Second, "how long to wait for the servers to accept requests")
	fs.IntVar(&cfg.instances, "instances", 1000, "instances imds serves (the requester, found by its address, is one of them)")
	fs.IntVar(&cfg.startups, "startups", 20, "times imds is started (zero configuration) to measure exec to first answer; 0 skips it")
	fs.StringVar(&cfg.refServer, refServerFlag, "", "internal: run as a reference server on this address")
	fs.StringVar(&cfg.refKind, refKindFlag, refNetHTTP, "internal: the reference server's kind (net/http or fasthttp)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nCompares the throughput of `imds serve` with a minimal net/http server (needs wrk).\n\nFlags:\n", name)
		printDefaultsExcept(fs, refServerFlag, refKindFlag)
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case cfg.wrk.duration < time.Second:
		return config{}, fmt.Errorf("-duration must be at least 1s, got %s", cfg.wrk.duration)
	case cfg.rounds < 1:
		return config{}, fmt.Errorf("-rounds must be at least 1, got %d", cfg.rounds)
	case cfg.wrk.threads < 1:
		return config{}, fmt.Errorf("-threads must be at least 1, got %d", cfg.wrk.threads)
	case cfg.wrk.connections < cfg.wrk.threads:
		return config{}, fmt.Errorf("-connections (%d) must be at least -threads (%d)", cfg.wrk.connections, cfg.wrk.threads)
	case cfg.startupTimeout <= 0:
		return config{}, fmt.Errorf("-startup-timeout must be positive, got %s", cfg.startupTimeout)
	case cfg.startups < 0 || cfg.startups > 1000:
		return config{}, fmt.Errorf("-startups must be from 0 to 1000, got %d", cfg.startups)
	case cfg.instances < 1 || cfg.instances > 1_000_000:
		return config{}, fmt.Errorf("-instances must be from 1 to 1000000, got %d", cfg.instances)
	}
	return cfg, nil
}

// printDefaultsExcept is fs.PrintDefaults without the hidden flags.
func printDefaultsExcept(fs *flag.FlagSet, hidden ...string) {
	visible := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	visible.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(hidden, f.Name) {
			visible.Var(f.Value, f.Name, f.Usage)
			visible.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	visible.PrintDefaults()
}
