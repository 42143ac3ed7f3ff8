package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// errStatusNotOK makes imds status exit non-zero; the report says why.
var errStatusNotOK = errors.New("the server reports problems (listed above)")

func newStatusCommand(clk clock.Clock) *cobra.Command {
	var af adminFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Report the running server: listeners, store, VM network, roles' credentials",
		Long: `imds status asks the running server (GET /v1/server on its admin API) what it
serves and how its parts are: its metadata listeners, its store (bolt and its
file, or etcd: whether it answers, its endpoints, the revision of the last list
and when etcd last answered, this host's name and lease, the live hosts), the
VM network, and the credentials of each role. It ends with the problems found and exits 1 if
there are any (etcd not answering, no lease, a role without valid
credentials, no listener), like imds net status.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			doc, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			problems := statusProblems(doc)
			var hosts []ec2.Host
			if doc.Store != nil && doc.Store.Backend == "etcd" && doc.Store.Online != nil && *doc.Store.Online {
				// Not a problem if it fails: etcd may have gone since.
				hosts, _ = c.ListHosts(cmd.Context())
			}
			if output == "table" {
				err = printStatus(cmd.OutOrStdout(), doc, hosts, problems, clk.Now())
			} else {
				var b []byte
				names := []string{}
				for _, h := range hosts {
					names = append(names, h.Name)
				}
				if b, err = json.Marshal(struct {
					admin.StatusDocument
					Hosts    []string `json:"hosts,omitempty"`
					Problems []string `json:"problems"`
				}{doc, names, problems}); err == nil {
					err = writeDocument(cmd.OutOrStdout(), output, b)
				}
			}
			if err == nil && len(problems) > 0 {
				err = errStatusNotOK
			}
			return err
		},
	}
	af.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output `format`: table, json or yaml (with a problems list)")
	return cmd
}

// statusProblems lists what is wrong in doc, one sentence each; none when
// all is well.
func statusProblems(doc admin.StatusDocument) []string {
	out := []string{} // [] in JSON and YAML when all is well, not null
	if len(doc.Listen) == 0 {
		out = append(out, "server: no metadata listener")
	}
	if s := doc.Store; s != nil && s.Backend == "etcd" {
		eps := strings.Join(s.Endpoints, ",")
		if s.Online != nil && !*s.Online {
			out = append(out, fmt.Sprintf("store: etcd at %s does not answer: serving the instances last listed, refusing writes", eps))
		}
		if s.Lease == "" {
			out = append(out, fmt.Sprintf("store: host %s holds no lease in etcd at %s, so it is missing from imds host list", ec2.Printable(s.Host), eps))
		}
	}
	for _, r := range doc.Roles {
		switch r.State {
		case "error":
			out = append(out, fmt.Sprintf("role %s: no credentials: %s", ec2.Printable(r.Name), r.Error))
		case "expired":
			out = append(out, fmt.Sprintf("role %s: its credentials expired at %s", ec2.Printable(r.Name), r.Expiration.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// printStatus writes the report: one line per part, then the problems.
func printStatus(w io.Writer, doc admin.StatusDocument, hosts []ec2.Host, problems []string, now time.Time) error {
	var b strings.Builder
	line := func(key, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", key, fmt.Sprintf(format, args...))
	}
	line("server", "imds %s, metadata on %s", dash(doc.Version), dash(strings.Join(doc.Listen, ", ")))
	admins := []string{}
	if doc.AdminSocket != "" {
		admins = append(admins, doc.AdminSocket)
	}
	if doc.AdminTCP != "" {
		admins = append(admins, doc.AdminTCP)
	}
	line("admin", "%s", dash(strings.Join(admins, ", ")))
	line("config", "%s", dash(doc.ConfigPath))
	line("data dir", "%s", dash(doc.DataDir))
	line("instances", "%d", doc.Instances)
	switch s := doc.Store; {
	case s == nil:
		line("store", "-")
	case s.Backend == "etcd":
		state := "answers"
		if s.Online != nil && !*s.Online {
			state = "DOES NOT ANSWER"
		}
		contact := "never"
		if !s.LastContact.IsZero() {
			contact = fmt.Sprintf("%s (%s ago)", s.LastContact.UTC().Format(time.RFC3339), now.Sub(s.LastContact).Round(time.Second))
		}
		line("store", "etcd at %s, prefix %s: %s", strings.Join(s.Endpoints, ","), s.Prefix, state)
		line("", "revision %d, last answer %s, %d resyncs", s.Revision, contact, s.Resyncs)
		line("", "host %s, lease %s", dash(ec2.Printable(s.Host)), dash(s.Lease))
		if len(hosts) > 0 {
			var names []string
			for _, h := range hosts {
				names = append(names, ec2.Printable(h.Name))
			}
			line("hosts", "%d live: %s", len(hosts), strings.Join(names, ", "))
		}
	default:
		line("store", "%s %s", s.Backend, s.Path)
	}
	if n := doc.VMNetwork; n != nil {
		managed := "bridge managed by imds"
		if !n.Managed {
			managed = "bridge not managed"
		}
		line("vm network", "%s %s, gateway %s, domain %s, %s", n.Bridge, n.Subnet, n.Gateway, dash(n.Domain), managed)
	} else {
		line("vm network", "-")
	}
	if len(doc.Roles) == 0 {
		line("roles", "-")
	}
	for i, r := range doc.Roles {
		key := ""
		if i == 0 {
			key = "roles"
		}
		what := r.State
		switch r.State {
		case "ok":
			what = "ok, expires " + r.Expiration.UTC().Format(time.RFC3339)
		case "error", "unused":
			what = r.State + ": " + r.Error
		}
		line(key, "%s (%s, %d instances): %s", ec2.Printable(r.Name), r.Source, r.Instances, what)
	}
	if len(problems) == 0 {
		b.WriteString("\nno problems\n")
	} else {
		b.WriteString("\nproblems:\n")
		for _, p := range problems {
			b.WriteString("  " + p + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
