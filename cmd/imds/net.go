package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/netsetup"
)

// errNetNotOK makes imds net status exit non-zero; the report says why.
var errNetNotOK = errors.New("metadata address not reachable")

func newNetCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "net",
		Short: "Make 169.254.169.254:80 reach the server (Linux, needs root or CAP_NET_ADMIN)",
		Long: `imds net up makes the metadata address 169.254.169.254:80 (and with --ipv6
[fd00:ec2::254]:80) reach an imds server listening on --port: for processes on
the host (or in the namespaces named by --netns) by adding the address to lo
and an nftables redirect, and for containers or VMs behind a bridge (--bridge)
by a DNAT to the bridge's own address, which keeps their source address.
Everything nftables is in the table inet imds; imds net down removes it and the
addresses up added.`,
	}
	var stateDir string
	c.PersistentFlags().StringVar(&stateDir, "state-dir", netsetup.DefaultStateDir, "`directory` of the files recording what imds net up added")

	var plan netsetup.Plan
	var upConfig string
	var hold bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Set up the metadata addresses (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if upConfig != "" && !cmd.Flags().Changed("port") {
				p, err := portFromConfig(upConfig)
				if err != nil {
					return err
				}
				plan.Port = p
			}
			if err := checkPort(plan.Port); err != nil {
				return err
			}
			changes, err := netsetup.Up(cmd.Context(), plan, stateDir)
			if err != nil {
				return err
			}
			if err := printChanges(cmd, changes); err != nil || !hold {
				return err
			}
			return holdNet(cmd, plan.Netns, stateDir)
		},
	}
	up.Flags().IntVar(&plan.Port, "port", netsetup.DefaultPort, "`port` the imds server listens on")
	up.Flags().StringArrayVar(&plan.Bridges, "bridge", nil, "bridge `interface` with containers or VMs behind it (repeatable)")
	up.Flags().StringArrayVar(&plan.Netns, "netns", nil, "set up inside the network namespace `name` instead of the host (repeatable)")
	up.Flags().BoolVar(&plan.IPv6, "ipv6", false, "also set up [fd00:ec2::254]:80")
	up.Flags().BoolVar(&hold, "hold", false, "stay running and undo everything on SIGTERM or SIGINT (a container's command)")
	up.Flags().StringVar(&upConfig, "config", "", "take --port from the listen addresses of this imds serve config `file`")

	var downNetns []string
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove what imds net up set up (no-op when nothing is)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changes, err := netsetup.Down(cmd.Context(), downNetns, stateDir)
			if perr := printChanges(cmd, changes); err == nil {
				err = perr
			}
			return err
		},
	}
	down.Flags().StringArrayVar(&downNetns, "netns", nil, "network namespace `name` (repeatable; default the host)")

	var (
		statusPort  int
		statusNetns []string
	)
	status := &cobra.Command{
		Use:   "status",
		Short: "Show what is in place and probe the metadata address",
		Long: `imds net status looks at what imds net up set up and probes the metadata
address end to end. Without --netns it looks at the host and at every network
namespace imds net up recorded in --state-dir; without --port it checks the
port (and the bridges) that imds net up recorded there, else 1338.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("port") {
				if err := checkPort(statusPort); err != nil {
					return err
				}
			}
			targets := statusNetns
			if len(targets) == 0 {
				recorded, err := netsetup.Recorded(stateDir)
				if err != nil {
					return err
				}
				targets = recorded
				if len(targets) == 0 {
					targets = []string{""}
				}
			}
			ok := true
			for _, ns := range targets {
				r, err := netsetup.Status(cmd.Context(), netsetup.StatusOptions{Port: statusPort, Netns: ns, StateDir: stateDir})
				if err != nil {
					return err
				}
				if _, err := fmt.Fprint(cmd.OutOrStdout(), r.String()); err != nil {
					return err
				}
				ok = ok && r.OK
			}
			if !ok {
				return errNetNotOK
			}
			return nil
		},
	}
	status.Flags().IntVar(&statusPort, "port", 0, "`port` the imds server listens on (default: what imds net up recorded, else 1338)")
	status.Flags().StringArrayVar(&statusNetns, "netns", nil, "network namespace `name` to look in (repeatable; default the host and every namespace imds net up recorded)")

	c.AddCommand(up, down, status)
	return c
}

func printChanges(cmd *cobra.Command, changes []netsetup.Change) error {
	out := cmd.OutOrStdout()
	if len(changes) == 0 {
		_, err := fmt.Fprintln(out, "nothing to change")
		return err
	}
	for _, c := range changes {
		if _, err := fmt.Fprintln(out, c); err != nil {
			return err
		}
	}
	return nil
}

// checkPort rejects a --port netsetup would take for "the default".
func checkPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("--port %d out of range (1-65535)", p)
	}
	return nil
}
