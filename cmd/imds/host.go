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

// hostDoc is a host as -o json and -o yaml print it: the admin API's names.
type hostDoc struct {
	Name       string   `json:"name"`
	Listen     []string `json:"listen,omitempty"`
	Version    string   `json:"version,omitempty"`
	Started    string   `json:"started,omitempty"`
	Lease      string   `json:"lease,omitempty"`
	TTLSeconds int64    `json:"ttl_seconds"`
	Self       bool     `json:"self,omitempty"`
	Pinned     *int     `json:"pinned,omitempty"`
}

func printHosts(w io.Writer, format string, l admin.HostList) error {
	hosts := l.Hosts
	if format != "table" {
		docs := make([]hostDoc, 0, len(hosts))
		for _, h := range hosts {
			d := hostDoc{Name: h.Name, Listen: h.Listen, Version: h.Version, Lease: h.Lease, TTLSeconds: int64(h.TTL / time.Second), Self: h.Self}
			if !h.Started.IsZero() {
				d.Started = h.Started.UTC().Format(time.RFC3339)
			}
			if l.Counted {
				d.Pinned = ec2.Ptr(h.Pinned)
			}
			docs = append(docs, d)
		}
		doc := map[string]any{"hosts": docs}
		if l.Counted {
			doc["unpinned"], doc["pinned_elsewhere"] = l.Unpinned, l.PinnedElsewhere
		}
		b, err := json.Marshal(doc)
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
