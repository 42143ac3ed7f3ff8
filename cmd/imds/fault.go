package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

func newFaultCommand() *cobra.Command {
	var (
		af     adminFlags
		output string
	)
	c := &cobra.Command{
		Use:   "fault",
		Short: "Inject latency, errors, throttling and other faults into instances of the running server",
		Long: "Inject faults into the metadata service of an instance (NAME) or of every instance (--all), so that\n" +
			"clients' retries, fallbacks and timeouts can be tested. The faults of every instance add to an\n" +
			"instance's own.",
		Example: `  imds fault set web-1 --latency 200ms --latency-max 1s
  imds fault set web-1 --error-rate 0.2 --error-status 500
  imds fault set --all --rate-limit 10 --burst 5
  imds fault set web-1 --token timeout
  imds fault get web-1
  imds fault clear --all`,
	}
	af.register(c.PersistentFlags())
	c.PersistentFlags().StringVarP(&output, "output", "o", "table", "output `format` of the faults afterwards: table, json or yaml")
	// run checks -o and the target, then calls f with the client and the
	// instance name ("" for --all) and prints the faults it returns.
	run := func(cmd *cobra.Command, args []string, all bool, f func(*admin.Client, string) (ec2.Faults, error)) error {
		if err := outputFormat(output); err != nil {
			return err
		}
		name, err := faultTarget(args, all)
		if err != nil {
			return err
		}
		client, err := af.client(cmd.Flags())
		if err != nil {
			return err
		}
		faults, err := f(client, name)
		if err != nil {
			return err
		}
		return printFaults(cmd.OutOrStdout(), output, name, faults)
	}
	c.AddCommand(newFaultSetCommand(run), newFaultGetCommand(run), newFaultClearCommand(run))
	return c
}

// faultRunner runs a fault subcommand; see newFaultCommand.
type faultRunner func(cmd *cobra.Command, args []string, all bool, f func(*admin.Client, string) (ec2.Faults, error)) error

// faultTarget returns the instance a command addresses: NAME, or "" with
// --all.
func faultTarget(args []string, all bool) (string, error) {
	switch {
	case all && len(args) > 0:
		return "", fmt.Errorf("NAME and --all: give one of them (--all: every instance), got %q and --all", args[0])
	case all:
		return "", nil
	case len(args) == 0:
		return "", errors.New("NAME or --all: say which instance's faults (--all: every instance)")
	case args[0] == "":
		return "", errors.New("NAME: must not be empty; use --all for every instance")
	}
	if err := ec2.CheckName(args[0]); err != nil {
		return "", err
	}
	return args[0], nil
}

func registerAll(fs *pflag.FlagSet, all *bool) {
	fs.BoolVar(all, "all", false, "the faults of every instance, which add to each instance's own, instead of NAME")
}

// faultFlags are the faults of set, one flag each.
type faultFlags struct {
	latency, latencyMax time.Duration
	errorRate           float64
	errorStatus         int
	rateLimit           float64
	burst               int
	token               string
	expiredCredentials  bool
	dropRate            float64
}

func (f *faultFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&f.latency, "latency", 0, "`delay` added to every response (at most 1m)")
	fs.DurationVar(&f.latencyMax, "latency-max", 0, "with it, the delay is random between --latency and this `duration`")
	fs.Float64Var(&f.errorRate, "error-rate", 0, "`share` of requests (0-1) answered with --error-status")
	fs.IntVar(&f.errorStatus, "error-status", 0, "`status` of the injected errors: 500 or 503 (default 503)")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0, "answer 429 above this many `requests` a second")
	fs.IntVar(&f.burst, "burst", 0, "`requests` at once that --rate-limit lets through")
	fs.StringVar(&f.token, "token", "", "token endpoint (PUT /latest/api/token) `fault`: refuse (answer 403) or timeout (no answer)")
	fs.BoolVar(&f.expiredCredentials, "expired-credentials", false, "serve role credentials whose Expiration has passed")
	fs.Float64Var(&f.dropRate, "drop-rate", 0, "`share` of requests (0-1) whose connection is closed without a response")
}

// faults checks the flags and returns the faults they say; every error
// names its flag.
func (f *faultFlags) faults(fs *pflag.FlagSet) (ec2.Faults, error) {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"latency", f.latency}, {"latency-max", f.latencyMax}} {
		if d.v < 0 || d.v > time.Minute {
			return ec2.Faults{}, fmt.Errorf("--%s: must be between 0 and 1m, got %s", d.flag, d.v)
		}
	}
	if f.latencyMax != 0 && f.latencyMax < f.latency {
		return ec2.Faults{}, fmt.Errorf("--latency-max: must not be below --latency (%s), got %s", f.latency, f.latencyMax)
	}
	for _, s := range []struct {
		flag string
		v    float64
	}{{"error-rate", f.errorRate}, {"drop-rate", f.dropRate}} {
		if !(s.v >= 0 && s.v <= 1) {
			return ec2.Faults{}, fmt.Errorf("--%s: must be a share between 0 and 1, got %g", s.flag, s.v)
		}
	}
	if fs.Changed("error-status") {
		if f.errorStatus != 500 && f.errorStatus != 503 {
			return ec2.Faults{}, fmt.Errorf("--error-status: must be 500 or 503, got %d", f.errorStatus)
		}
		if f.errorRate == 0 {
			return ec2.Faults{}, errors.New("--error-status: only used with --error-rate")
		}
	}
	if !(f.rateLimit >= 0) || math.IsInf(f.rateLimit, 1) {
		return ec2.Faults{}, fmt.Errorf("--rate-limit: must be a number of requests a second, 0 or more, got %g", f.rateLimit)
	}
	if f.burst < 0 {
		return ec2.Faults{}, fmt.Errorf("--burst: must not be negative, got %d", f.burst)
	}
	if f.burst > 0 && f.rateLimit == 0 {
		return ec2.Faults{}, errors.New("--burst: only used with --rate-limit")
	}
	if fs.Changed("token") && f.token != ec2.TokenRefuse && f.token != ec2.TokenTimeout {
		return ec2.Faults{}, fmt.Errorf("--token: must be refuse or timeout, got %q", f.token)
	}
	faults := ec2.Faults{Latency: f.latency, LatencyMax: f.latencyMax, ErrorRate: f.errorRate, ErrorStatus: f.errorStatus,
		RateLimit: f.rateLimit, Burst: f.burst, Token: f.token, ExpiredCredentials: f.expiredCredentials, DropRate: f.dropRate}
	if err := faults.Validate(); err != nil {
		return ec2.Faults{}, err
	}
	return faults, nil
}

func newFaultSetCommand(run faultRunner) *cobra.Command {
	var (
		all bool
		ff  faultFlags
	)
	cmd := &cobra.Command{
		Use: "set NAME|--all [--latency 200ms] [--latency-max 1s] [--error-rate 0.2] [--error-status 500|503]\n" +
			"  [--rate-limit 10] [--burst 5] [--token refuse|timeout] [--expired-credentials] [--drop-rate 0.1]",
		Short: "Replace the faults of an instance, or of every instance, with exactly the ones the flags give",
		Long: "Replace the faults of an instance, or of every instance with --all, with exactly the ones the flags\n" +
			"give: a fault whose flag is left out is turned off, so set with no fault flag clears them all.",
		Args: needArgs(0, 1, "one instance NAME or --all"),
		RunE: func(cmd *cobra.Command, args []string) error {
			faults, err := ff.faults(cmd.Flags())
			if err != nil {
				return err
			}
			return run(cmd, args, all, func(client *admin.Client, name string) (ec2.Faults, error) {
				return faults, client.SetFaults(cmd.Context(), name, faults)
			})
		},
	}
	registerAll(cmd.Flags(), &all)
	ff.register(cmd.Flags())
	return cmd
}

func newFaultGetCommand(run faultRunner) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "get NAME|--all",
		Short: "Show the faults of an instance, or of every instance",
		Args:  needArgs(0, 1, "one instance NAME or --all"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, args, all, func(client *admin.Client, name string) (ec2.Faults, error) {
				return client.GetFaults(cmd.Context(), name)
			})
		},
	}
	registerAll(cmd.Flags(), &all)
	return cmd
}

func newFaultClearCommand(run faultRunner) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "clear NAME|--all",
		Short: "Turn every fault of an instance, or of every instance, off",
		Long: "Turn every fault of an instance off, or with --all the faults set for every instance\n" +
			"(an instance's own faults stay).",
		Args: needArgs(0, 1, "one instance NAME or --all"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, args, all, func(client *admin.Client, name string) (ec2.Faults, error) {
				return ec2.Faults{}, client.ClearFaults(cmd.Context(), name)
			})
		},
	}
	registerAll(cmd.Flags(), &all)
	return cmd
}

// printFaults writes the faults of the named instance ("" for every
// instance): one line, or the admin API's document in json or yaml.
func printFaults(w io.Writer, format, name string, f ec2.Faults) error {
	if format != "table" {
		doc, err := admin.MarshalFaults(f)
		if err != nil {
			return err
		}
		return writeDocument(w, format, doc)
	}
	if name == "" {
		name = "all instances"
	}
	summary := "no faults"
	if f.Active() {
		summary = f.String()
	}
	_, err := fmt.Fprintf(w, "%s: %s\n", ec2.Printable(name), summary)
	return err
}
