package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

func newEventCommand(clk clock.Clock) *cobra.Command {
	var (
		af     adminFlags
		output string
	)
	c := &cobra.Command{
		Use:   "event",
		Short: "Issue spot, rebalance, maintenance and Auto Scaling events to instances of the running server",
		Example: `  imds event spot web-1 --action stop --in 5m
  imds event rebalance web-1
  imds event maintenance web-1 --code instance-reboot --in 30m
  imds event maintenance web-1 --complete instance-event-0123456789abcdef0
  imds event asg web-1 Terminated
  imds event clear web-1`,
	}
	af.register(c.PersistentFlags())
	c.PersistentFlags().StringVarP(&output, "output", "o", "table", "output `format` of the instance's events afterwards: table, json or yaml")
	send := func(cmd *cobra.Command, name string, req ec2.EventRequest) error {
		client, err := af.client(cmd.Flags())
		if err != nil {
			return err
		}
		ev, err := client.TriggerEvent(cmd.Context(), name, req)
		if err != nil {
			return err
		}
		return printEvents(cmd.OutOrStdout(), output, name, ev)
	}
	check := func() error { return outputFormat(output) }
	c.AddCommand(newEventSpotCommand(check, send, clk.Now), newEventRebalanceCommand(check, send),
		newEventMaintenanceCommand(check, send, clk.Now), newEventASGCommand(check, send), newEventClearCommand(check, send))
	return c
}

// eventSender sends an event request for the named instance and prints the
// result.
type eventSender func(cmd *cobra.Command, name string, req ec2.EventRequest) error

func newEventSpotCommand(check func() error, send eventSender, now func() time.Time) *cobra.Command {
	var (
		action string
		in     time.Duration
		at     string
	)
	cmd := &cobra.Command{
		Use:   "spot NAME [--action terminate|stop|hibernate] [--in 2m | --at TIME]",
		Short: "Issue a spot interruption notice: spot/instance-action appears now, the action happens --in later (or --at)",
		Long: `Issue a spot interruption notice.

With --in (default 2m), spot/instance-action (and, for terminate,
spot/termination-time) shows the notice at once, for an action --in from now.
With --at, the action happens at that time and, as on EC2, the notice appears
two minutes before it: until then the instance sees nothing (404) and the
output shows the notice as scheduled. A time in the past is refused.

A new notice replaces the instance's earlier one at once, shown or scheduled;
the output says which it replaced. imds event clear withdraws it.`,
		Args: instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := check(); err != nil {
				return err
			}
			if !slices.Contains(ec2.SpotActions, action) {
				return fmt.Errorf("--action: must be one of %s, got %q", strings.Join(ec2.SpotActions, ", "), action)
			}
			req := ec2.EventRequest{Type: ec2.EventSpot, Action: action}
			if fs.Changed("in") && fs.Changed("at") {
				return errors.New("--in and --at: give one of them (--in: the notice's lead before the action; --at: when the action happens)")
			}
			if fs.Changed("at") {
				t, err := parseFlagTime("at", at)
				if err != nil {
					return err
				}
				if n := now().UTC().Truncate(time.Second); t.Before(n) {
					return fmt.Errorf("--at: %s is in the past (now is %s); give a later time, or --in for an action that near",
						t.UTC().Format(time.RFC3339), n.Format(time.RFC3339))
				}
				req.At = t
			} else {
				if in <= 0 {
					return fmt.Errorf("--in: must be positive, got %s", in)
				}
				req.Lead = in
			}
			return send(cmd, args[0], req)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&action, "action", ec2.SpotTerminate, "interruption `action`: terminate, stop or hibernate")
	fs.DurationVar(&in, "in", 2*time.Minute, "`lead` time of the notice before the action")
	fs.StringVar(&at, "at", "", "`time` the action happens (RFC 3339, e.g. 2026-01-02T15:04:05Z), instead of --in")
	return cmd
}

func newEventRebalanceCommand(check func() error, send eventSender) *cobra.Command {
	return &cobra.Command{
		Use:   "rebalance NAME",
		Short: "Issue a rebalance recommendation (events/recommendations/rebalance)",
		Args:  instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			return send(cmd, args[0], ec2.EventRequest{Type: ec2.EventRebalance})
		},
	}
}

func newEventMaintenanceCommand(check func() error, send eventSender, now func() time.Time) *cobra.Command {
	var (
		code, description  string
		in, duration       time.Duration
		notBefore          string
		complete, cancelID string
	)
	cmd := &cobra.Command{
		Use: "maintenance NAME [--code CODE] [--description TEXT] [--in 1h | --not-before TIME] [--duration 20m]\n" +
			"  imds event maintenance NAME --complete EVENT_ID | --cancel EVENT_ID",
		Short: "Schedule a maintenance event (events/maintenance/scheduled), or complete or cancel one",
		Args:  instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := check(); err != nil {
				return err
			}
			schedule := []string{"code", "description", "in", "not-before", "duration"}
			for _, end := range []string{"complete", "cancel"} {
				if !fs.Changed(end) {
					continue
				}
				for _, other := range append([]string{"complete", "cancel"}, schedule...) {
					if other != end && fs.Changed(other) {
						return fmt.Errorf("--%s and --%s: cannot be combined", end, other)
					}
				}
				id := complete
				typ := ec2.EventMaintenanceComplete
				if end == "cancel" {
					id, typ = cancelID, ec2.EventMaintenanceCancel
				}
				if id == "" {
					return fmt.Errorf("--%s: needs an event ID like instance-event-0123456789abcdef0", end)
				}
				return send(cmd, args[0], ec2.EventRequest{Type: typ, EventID: id})
			}
			if !slices.Contains(ec2.MaintenanceCodes, code) {
				return fmt.Errorf("--code: must be one of %s, got %q", strings.Join(ec2.MaintenanceCodes, ", "), code)
			}
			req := ec2.EventRequest{Type: ec2.EventMaintenance, Code: code, Description: description}
			if fs.Changed("in") && fs.Changed("not-before") {
				return errors.New("--in and --not-before: give one of them")
			}
			switch {
			case fs.Changed("not-before"):
				t, err := parseFlagTime("not-before", notBefore)
				if err != nil {
					return err
				}
				req.NotBefore = t
			case fs.Changed("in"):
				if in < 0 {
					return fmt.Errorf("--in: must not be negative, got %s", in)
				}
				req.NotBefore = now().Add(in).UTC().Truncate(time.Second)
			}
			if duration <= 0 {
				return fmt.Errorf("--duration: must be positive, got %s", duration)
			}
			req.Duration = duration
			return send(cmd, args[0], req)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&code, "code", "system-reboot", "event `code`: "+strings.Join(ec2.MaintenanceCodes, ", "))
	fs.StringVar(&description, "description", "", "`text` of the event's Description (default: one for the code)")
	fs.DurationVar(&in, "in", time.Hour, "how long from now the event's window starts (`duration`)")
	fs.StringVar(&notBefore, "not-before", "", "`time` the event's window starts (RFC 3339), instead of --in")
	fs.DurationVar(&duration, "duration", 20*time.Minute, "length of the event's window (`duration`)")
	fs.StringVar(&complete, "complete", "", "complete the scheduled event `EVENT_ID` (it moves to the history)")
	fs.StringVar(&cancelID, "cancel", "", "cancel the scheduled event `EVENT_ID` (it moves to the history)")
	return cmd
}

func newEventASGCommand(check func() error, send eventSender) *cobra.Command {
	return &cobra.Command{
		Use:   "asg NAME STATE",
		Short: "Set the Auto Scaling target lifecycle state (autoscaling/target-lifecycle-state)",
		Long: "Set the Auto Scaling target lifecycle state (autoscaling/target-lifecycle-state).\n\n" +
			"STATE is one of " + strings.Join(ec2.AutoscalingStates, ", ") + ".",
		Args: instanceArgs(2, 2, 1, "an instance NAME and a STATE ("+strings.Join(ec2.AutoscalingStates, ", ")+")"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			i := slices.IndexFunc(ec2.AutoscalingStates, func(s string) bool { return strings.EqualFold(s, args[1]) })
			if i < 0 {
				return fmt.Errorf("STATE: must be one of %s, got %q", strings.Join(ec2.AutoscalingStates, ", "), args[1])
			}
			return send(cmd, args[0], ec2.EventRequest{Type: ec2.EventAutoscaling, State: ec2.AutoscalingStates[i]})
		},
	}
}

func newEventClearCommand(check func() error, send eventSender) *cobra.Command {
	return &cobra.Command{
		Use:   "clear NAME",
		Short: "Withdraw every event of an instance: spot notice, rebalance, maintenance with its history, Auto Scaling state",
		Long: `Withdraw every event of an instance: the spot notice (shown or scheduled),
the rebalance recommendation, the maintenance events together with their
history (events/maintenance/history is empty afterwards), and the Auto
Scaling target lifecycle state an asg event set (the instance's own from the
config comes back). The instance stays a spot instance only if it was one.
Faults are not events: imds fault clear removes those.`,
		Args: instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			return send(cmd, args[0], ec2.EventRequest{Type: ec2.EventClear})
		},
	}
}

// parseFlagTime parses an RFC 3339 time given to --flag.
func parseFlagTime(flag, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s: must be an RFC 3339 time like 2026-01-02T15:04:05Z, got %q", flag, s)
	}
	return t, nil
}

// printEvents writes the events of the named instance: a summary, or the
// admin API's document in json or yaml.
func printEvents(w io.Writer, format, name string, ev ec2.Events) error {
	if format != "table" {
		doc, err := admin.MarshalEvents(ev)
		if err != nil {
			return err
		}
		return writeDocument(w, format, doc)
	}
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var b bytes.Buffer
	fmt.Fprintf(&b, "events of %s:\n", ec2.Printable(name))
	if r := ev.SpotReplaced; r != nil {
		fmt.Fprintf(&b, "replaced spot notice:     %s at %s\n", r.Action, stamp(r.Time))
	}
	switch sp := ev.Spot; {
	case sp != nil:
		fmt.Fprintf(&b, "spot interruption:        %s at %s, shown now at %s\n", sp.Action, stamp(sp.Time), strings.Join(sp.Paths(), " and "))
	case ev.SpotScheduled != nil:
		sp := ev.SpotScheduled
		verb := "answers"
		if len(sp.Paths()) > 1 {
			verb = "answer"
		}
		fmt.Fprintf(&b, "spot interruption:        scheduled: %s at %s; %s %s 404 until %s, then show it\n",
			sp.Action, stamp(sp.Time), strings.Join(sp.Paths(), " and "), verb, stamp(sp.Notice))
	default:
		fmt.Fprintf(&b, "spot interruption:        none\n")
	}
	if !ev.Rebalance.IsZero() {
		fmt.Fprintf(&b, "rebalance recommendation: since %s\n", stamp(ev.Rebalance))
	} else {
		fmt.Fprintf(&b, "rebalance recommendation: none\n")
	}
	if len(ev.Maintenance) == 0 {
		fmt.Fprintf(&b, "maintenance events:       none\n")
	} else {
		fmt.Fprintf(&b, "maintenance events:\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EVENT-ID\tCODE\tSTATE\tNOT-BEFORE\tNOT-AFTER")
		for _, m := range ev.Maintenance {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.Code, m.State, stamp(m.NotBefore), stamp(m.NotAfter))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if ev.AutoscalingState != "" {
		fmt.Fprintf(&b, "auto scaling state:       %s\n", ev.AutoscalingState)
	} else {
		fmt.Fprintf(&b, "auto scaling state:       none\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}
