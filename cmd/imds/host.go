package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

func newHostCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "host",
		Short: "The imds hosts sharing the running server's store (store.etcd)",
	}
	af.register(c.PersistentFlags())
	c.AddCommand(newHostListCommand(&af))
	return c
}

func newHostListCommand(af *adminFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the live hosts sharing the store, with their leases",
		Long: "List the imds hosts whose lease in etcd is live: each host renews its lease while it runs, and\n" +
			"one that stops renewing (killed, cut off from etcd) drops out when its TTL runs out.\n" +
			"PINNED counts the instances pinned to each host (instance add --host); the line after the table\n" +
			"counts those every host serves, and those pinned to a host that is not live (served by none).",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			l, err := c.HostList(cmd.Context())
			if err != nil {
				return err
			}
			return printHosts(cmd.OutOrStdout(), output, l)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output `format`: table, json or yaml")
	return cmd
}

func printHosts(w io.Writer, format string, l admin.HostList) error {
	hosts := l.Hosts
	if format != "table" {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return writeDocument(w, format, b)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NAME\tLISTEN\tVERSION\tSTARTED\tLEASE\tTTL"
	if l.Counted {
		header += "\tPINNED"
	}
	fmt.Fprintln(tw, header)
	for _, h := range hosts {
		name := ec2.Printable(h.Name)
		if h.Self {
			name += " (this host)"
		}
		started := "-"
		if !h.Started.IsZero() {
			started = h.Started.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", name, dash(strings.Join(h.Listen, ",")), dash(h.Version), started, dash(h.Lease), h.TTL)
		if l.Counted {
			fmt.Fprintf(tw, "\t%d", h.Pinned)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.Counted {
		line := fmt.Sprintf("unpinned instances (served by every host): %d", l.Unpinned)
		if l.PinnedElsewhere > 0 {
			line += fmt.Sprintf("; pinned to no live host (served by none): %d", l.PinnedElsewhere)
		}
		_, err := fmt.Fprintln(w, line)
		return err
	}
	return nil
}
