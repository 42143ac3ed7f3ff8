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
		Short: "Set up the metadata addresses (additive, idempotent)",
		Long: `imds net up sets up the metadata addresses for the host (or the namespaces
of --netns) and the bridges of --bridge, in addition to what an earlier
imds net up set up there: bridges add up, --ipv6 once given stays, and
without --port the recorded port stays. A recorded bridge that no longer
exists is dropped. It prints what it changed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case cmd.Flags().Changed("port"):
				if err := checkPort(plan.Port); err != nil {
					return err
				}
			case upConfig != "":
				p, err := portFromConfig(upConfig) // 0: the config names none
				if err != nil {
					return err
				}
				plan.Port = p
			default:
				plan.Port = 0 // what up recorded, else the default
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
	up.Flags().IntVar(&plan.Port, "port", netsetup.DefaultPort, "`port` the imds server listens on (default: the one up recorded, else 1338; another moves every rule)")
	up.Flags().StringArrayVar(&plan.Bridges, "bridge", nil, "bridge `interface` with containers or VMs behind it (repeatable)")
	up.Flags().StringArrayVar(&plan.Netns, "netns", nil, "set up inside the network namespace `name` instead of the host (repeatable)")
	up.Flags().BoolVar(&plan.IPv6, "ipv6", false, "also set up [fd00:ec2::254]:80")
	up.Flags().BoolVar(&hold, "hold", false, "stay running and undo everything on SIGTERM or SIGINT (a container's command)")
	up.Flags().StringVar(&upConfig, "config", "", "take --port from the listen addresses of this imds serve config `file`")

	var downNetns, downBridges []string
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove what imds net up set up (no-op when nothing is)",
		Long: `imds net down removes what imds net up set up: the table inet imds and the
addresses up added. With --bridge it removes only the rules of those bridges
and leaves the rest.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var changes []netsetup.Change
			var err error
			if len(downBridges) > 0 {
				changes, err = netsetup.DownBridges(cmd.Context(), downNetns, downBridges, stateDir)
			} else {
				changes, err = netsetup.Down(cmd.Context(), downNetns, stateDir)
			}
			if perr := printChanges(cmd, changes); err == nil {
				err = perr
			}
			return err
		},
	}
	down.Flags().StringArrayVar(&downNetns, "netns", nil, "network namespace `name` (repeatable; default the host)")
	down.Flags().StringArrayVar(&downBridges, "bridge", nil, "remove only the rules of bridge `interface` (repeatable)")

	var (
		statusPort  int
		statusNetns []string
	)
	status := &cobra.Command{
		Use:   "status",
		Short: "Show what is in place and probe every path imds net up set up",
		Long: `imds net status looks at what imds net up set up and probes each path the way
a client there would (a token PUT, then a GET, with Host 169.254.169.254):
through lo for the host's own processes, IPv4 and (if set up) IPv6, and for
each bridge the address its DNAT leads to. It says per path what is wrong and
what to do. An answer 404 from imds because the requester is not an instance
counts as reachable: the host's own probe comes from 169.254.169.254 (the
address on lo), a bridge's from the bridge's address.

Without --netns it looks at the host and at every network namespace imds net
up recorded in --state-dir; without --port it checks the port (and the
bridges) that imds net up recorded there, else 1338. It exits non-zero only
when a path is broken.`,
		Args: noArgs,
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
