// Command imds is an EC2 instance metadata service for everywhere that is not
// EC2: `imds serve` runs it, the other subcommands manage it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, clock.Real{}, args, stdout, stderr)
}

// runWith is run with the clock the commands tell the time by.
func runWith(ctx context.Context, clk clock.Clock, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr, clk)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "imds: %s\n", cliMessage(err))
		return 1
	}
	return 0
}

// cliMessage is how the CLI says err: each application error (from the
// admin API) by its message, with the context wrapped around it kept, and an
// internal one of the server as a pointer to its log.
func cliMessage(err error) string {
	msg := err.Error()
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*ec2.Error); ok {
			say := e.Message
			if e.Code == ec2.EINTERNAL {
				say = "the server failed with an internal error; see its log"
			}
			msg = strings.Replace(msg, e.Error(), say, 1)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				walk(next)
			}
		case interface{ Unwrap() []error }:
			for _, next := range u.Unwrap() {
				walk(next)
			}
		}
	}
	walk(err)
	return msg
}

func newRootCommand(stdout, stderr io.Writer, clk clock.Clock) *cobra.Command {
	root := &cobra.Command{
		Use:           "imds",
		Short:         "An EC2 instance metadata service (IMDSv1 and IMDSv2) for everywhere that is not EC2",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.Version = currentBuild().Version
	root.SetVersionTemplate(`{{with .Root}}{{.Name}} {{.Version}}{{end}}` + "\n" + currentBuild().details())
	root.AddCommand(newServeCommand(), newInstanceCommand(), newHostCommand(), newEventCommand(clk), newFaultCommand(), newLogsCommand(), newReportCommand(),
		newNetCommand(), newLibvirtCommand(), newCredsCommand(), newCACommand(), newVersionCommand(), newHealthcheckCommand(), newDashboardCommand(clk), newGendocsCommand(), newDBCommand(), newStatusCommand(clk))
	root.SetFlagErrorFunc(flagError)
	groupCommands(root)
	return root
}
