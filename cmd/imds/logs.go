package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

// logTimeFormat is the TIME column of imds logs.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

var logHeader = []string{"TIME", "INSTANCE", "METHOD", "PATH", "STATUS", "API", "LATENCY", "USER-AGENT"}

func newLogsCommand() *cobra.Command {
	var (
		af     adminFlags
		follow bool
		limit  int
		output string
	)
	c := &cobra.Command{
		Use:   "logs [NAME]",
		Short: "Show the metadata requests of an instance, or of all (through the admin API)",
		Long: `Show the recent metadata requests the server kept for the named instance, or for
every instance and unknown requesters without a name; with -f, follow the new
ones as they happen (a reader that falls far behind misses some).`,
		Example: `  imds logs web-1
  imds logs -f
  imds logs web-1 -n 20 -o json
  imds logs web-1 -o yaml`,
		Args: instanceArgs(0, 1, -1, "at most one instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("-n/--tail: must be >= 0, got %d", limit)
			}
			name := ""
			if len(args) == 1 {
				if name = args[0]; name == "" {
					return fmt.Errorf("the instance name must not be empty")
				}
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p := newLogPrinter(cmd.OutOrStdout(), output, follow)
			if !follow {
				recs, err := c.Requests(ctx, name, limit)
				if err != nil {
					return err
				}
				for _, r := range recs {
					p.print(r)
				}
				return p.flush()
			}
			// Follow first, so that nothing falls between the backlog and
			// the stream; the stream drops what the backlog showed.
			recs, errc := c.FollowRequests(ctx, name)
			var last time.Time
			if cmd.Flags().Changed("tail") && limit > 0 {
				backlog, err := c.Requests(ctx, name, limit)
				if err != nil {
					return err
				}
				for _, r := range backlog {
					p.print(r)
					last = r.Time
				}
			}
			if err := p.flush(); err != nil {
				return err
			}
			for r := range recs {
				if !r.Time.After(last) {
					continue
				}
				p.print(r)
				if err := p.flush(); err != nil {
					return err
				}
			}
			if err := <-errc; err != nil {
				return err
			}
			return nil
		},
	}
	af.register(c.PersistentFlags())
	fs := c.Flags()
	fs.BoolVarP(&follow, "follow", "f", false, "follow the new requests as they happen, until interrupted")
	fs.IntVarP(&limit, "tail", "n", 0, "show the last `N` requests (0: all kept); with -f, the last N before following")
	fs.StringVarP(&output, "output", "o", "table", "output `format`: table, json (one object per line) or yaml (one document per request)")
	return c
}

// logPrinter writes request records as a table or as JSON lines. Its table
// is aligned with a tabwriter when listing; when following, the columns are
// padded to widths that grow with what was seen, so each line can be
// written as it comes.
type logPrinter struct {
	w      io.Writer
	format string
	follow bool
	buf    bytes.Buffer
	tw     *tabwriter.Writer
	widths []int
	header bool
}

func newLogPrinter(w io.Writer, format string, follow bool) *logPrinter {
	p := &logPrinter{w: w, format: format, follow: follow}
	if format == "table" {
		p.widths = []int{len(logTimeFormat), 10, 6, 40, 6, 3, 9, 0}
		if !follow {
			p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		}
	}
	return p
}

func (p *logPrinter) row(cols []string) {
	if p.tw != nil {
		fmt.Fprintln(p.tw, strings.Join(cols, "\t"))
		return
	}
	for i, c := range cols {
		if i == len(cols)-1 {
			p.buf.WriteString(c)
			break
		}
		p.widths[i] = max(p.widths[i], len(c))
		p.buf.WriteString(c)
		p.buf.WriteString(strings.Repeat(" ", p.widths[i]-len(c)+2))
	}
	p.buf.WriteByte('\n')
}

func (p *logPrinter) print(r ec2.RequestRecord) {
	switch p.format {
	case "json":
		line, err := json.Marshal(admin.NewRequestDocument(r))
		if err == nil {
			p.buf.Write(line)
			p.buf.WriteByte('\n')
		}
		return
	case "yaml":
		// A stream of documents, so that -f can write each as it comes.
		line, err := json.Marshal(admin.NewRequestDocument(r))
		if err == nil {
			if doc, err := jsonToYAML(line); err == nil {
				p.buf.WriteString("---\n")
				p.buf.Write(doc)
			}
		}
		return
	}
	if !p.header {
		p.header = true
		p.row(logHeader)
	}
	inst := r.Instance
	if inst == "" {
		inst = "(unknown)"
	}
	p.row([]string{
		r.Time.Local().Format(logTimeFormat),
		safeText(inst),
		safeText(r.Method),
		safeText(r.Path),
		strconv.Itoa(r.Status),
		dash(r.API),
		formatLatency(r.Latency),
		dash(safeText(r.UserAgent)),
	})
}

// flush writes what was printed; a table without rows still gets its
// header.
func (p *logPrinter) flush() error {
	if p.format == "table" && !p.header {
		p.header = true
		p.row(logHeader)
	}
	if p.tw != nil {
		if err := p.tw.Flush(); err != nil {
			return err
		}
	}
	if p.buf.Len() == 0 {
		return nil
	}
	_, err := p.w.Write(p.buf.Bytes())
	p.buf.Reset()
	return err
}

func formatLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// safeText escapes what requesters sent (paths, user agents) so that it
// cannot move the cursor, recolour the terminal or break the table's
// columns.
func safeText(s string) string { return ec2.Printable(s) }

func newReportCommand() *cobra.Command {
	var (
		af     adminFlags
		output string
	)
	c := &cobra.Command{
		Use:   "report NAME",
		Short: "Summarise what an instance's applications asked for, and whether they are ready for IMDSv2-only",
		Long: `Summarise the metadata requests of an instance since the server started: how
many used IMDSv1 (no session token) and which user agents sent those, which
would fail once the instance requires IMDSv2 (http-tokens required), and the
paths and user agents by number of requests.`,
		Example: `  imds report web-1
  imds report web-1 -o json`,
		Args: instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			rep, err := c.Report(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printReport(cmd.OutOrStdout(), output, rep)
		},
	}
	af.register(c.PersistentFlags())
	c.Flags().StringVarP(&output, "output", "o", "table", "output `format`: table, json or yaml")
	return c
}

func printReport(w io.Writer, format string, rep ec2.RequestReport) error {
	if format != "table" {
		doc, err := json.Marshal(admin.NewReportDocument(rep))
		if err != nil {
			return err
		}
		return writeDocument(w, format, doc)
	}
	var b bytes.Buffer
	name := rep.Instance
	if name == "" {
		name = "(unknown requesters)"
	}
	fmt.Fprintf(&b, "Instance: %s\n", safeText(name))
	fmt.Fprintf(&b, "Requests: %d (IMDSv2: %d, IMDSv1: %d, errors: %d)\n", rep.Requests, rep.V2Requests, rep.V1Requests, rep.Errors)
	if !rep.First.IsZero() {
		fmt.Fprintf(&b, "Period:   %s to %s\n", rep.First.Local().Format(time.RFC3339), rep.Last.Local().Format(time.RFC3339))
	}
	b.WriteString(verdict(rep))
	b.WriteByte('\n')

	b.WriteByte('\n')
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tREQUESTS\tV1")
	for _, p := range rep.Paths {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", safeText(p.Path), p.Requests, p.V1)
	}
	tw.Flush()
	b.WriteByte('\n')
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER-AGENT\tREQUESTS\tV1")
	for _, a := range rep.UserAgents {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", dash(safeText(a.UserAgent)), a.Requests, a.V1)
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// maxVerdictAgents is the number of IMDSv1 user agents the verdict names.
const maxVerdictAgents = 3

// verdict says whether the instance's applications would keep working with
// IMDSv2 required, naming the user agents that used IMDSv1.
func verdict(rep ec2.RequestReport) string {
	if rep.V1Requests == 0 {
		return fmt.Sprintf("IMDSv1: none of %d requests: ready for IMDSv2-only", rep.Requests)
	}
	var agents []string
	more := false
	byV1 := slices.Clone(rep.UserAgents) // sorted by requests: keep that for ties
	slices.SortStableFunc(byV1, func(a, b ec2.AgentUse) int { return cmp.Compare(b.V1, a.V1) })
	for _, a := range byV1 {
		if a.V1 == 0 {
			break
		}
		if len(agents) == maxVerdictAgents {
			more = true
			break
		}
		agents = append(agents, dash(safeText(a.UserAgent)))
	}
	from := strings.Join(agents, ", ")
	if more {
		from += ", ..."
	}
	return fmt.Sprintf("IMDSv1: %d of %d requests (from %s): NOT ready for IMDSv2-only (http-tokens required)", rep.V1Requests, rep.Requests, from)
}
