// Command imds is an EC2 instance metadata service for everywhere that is not
// EC2: `imds serve` runs it, the other subcommands manage it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "imds: %v\n", err)
		return 1
	}
	return 0
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
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
	root.AddCommand(newServeCommand(), newInstanceCommand(), newEventCommand(), newFaultCommand(), newLogsCommand(), newReportCommand(),
		newNetCommand(), newLibvirtCommand(), newCredsCommand(), newCACommand(), newVersionCommand(), newHealthcheckCommand(), newGendocsCommand())
	return root
}
