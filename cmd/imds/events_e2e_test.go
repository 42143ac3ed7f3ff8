package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/transport/http"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// poll reads a metadata path with the Go SDK the way termination handlers
// do; it returns the body, or "" for a 404.
func poll(t *testing.T, c *sdkimds.Client, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
	if err != nil {
		var re *http.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
			return ""
		}
		t.Fatalf("GetMetadata %s: %v", path, err)
	}
	defer out.Content.Close()
	b, _ := io.ReadAll(out.Content)
	return string(b)
}

func TestEventsSeenByGoSDK(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	srv := startTestServer(t, "instance:\n  name: worker\n  autoscaling_target_lifecycle_state: InService\n", "required", clk)
	c := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	ctx := context.Background()
	trigger := func(req ec2.EventRequest) ec2.Events {
		t.Helper()
		ev, err := srv.d.Registry.TriggerEvent(ctx, "worker", req)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}

	// Spot: nothing before, then a fixed notice two minutes ahead.
	for _, p := range []string{"spot/instance-action", "spot/termination-time", "events/recommendations/rebalance"} {
		if got := poll(t, c, p); got != "" {
			t.Errorf("%s before any event = %q, want 404", p, got)
		}
	}
	trigger(ec2.EventRequest{Type: "spot"})
	want := `{"action": "terminate", "time": "` + clk.Now().Add(2*time.Minute).Format("2006-01-02T15:04:05Z") + `"}`
	for i := 0; i < 3; i++ {
		if got := poll(t, c, "spot/instance-action"); got != want {
			t.Errorf("poll %d: spot/instance-action = %q, want %q", i, got, want)
		}
		clk.Advance(5 * time.Second) // AWS's advice: poll every 5 seconds
	}
	var action struct{ Action, Time string }
	if err := json.Unmarshal([]byte(poll(t, c, "spot/instance-action")), &action); err != nil || action.Action != "terminate" {
		t.Errorf("instance-action is not the JSON handlers parse: %+v %v", action, err)
	}
	if got := poll(t, c, "spot/termination-time"); got != action.Time {
		t.Errorf("termination-time %q, want %q", got, action.Time)
	}
	if got := poll(t, c, "instance-life-cycle"); got != "spot" {
		t.Errorf("instance-life-cycle %q, want spot", got)
	}

	// Rebalance recommendation.
	trigger(ec2.EventRequest{Type: "rebalance"})
	first := poll(t, c, "events/recommendations/rebalance")
	clk.Advance(10 * time.Second)
	if !strings.HasPrefix(first, `{"noticeTime": "`) || poll(t, c, "events/recommendations/rebalance") != first {
		t.Errorf("rebalance %q moved or has the wrong shape", first)
	}

	// Maintenance through its states into history.
	if got := poll(t, c, "events/maintenance/scheduled"); got != "[]" {
		t.Errorf("scheduled before any event = %q, want []", got)
	}
	ev := trigger(ec2.EventRequest{Type: "maintenance", Code: "system-reboot"})
	var sched []map[string]string
	json.Unmarshal([]byte(poll(t, c, "events/maintenance/scheduled")), &sched)
	if len(sched) != 1 || sched[0]["State"] != "active" || sched[0]["EventId"] != ev.Maintenance[0].ID {
		t.Fatalf("scheduled %v", sched)
	}
	trigger(ec2.EventRequest{Type: "maintenance-complete", EventID: ev.Maintenance[0].ID})
	var hist []map[string]string
	json.Unmarshal([]byte(poll(t, c, "events/maintenance/history")), &hist)
	if poll(t, c, "events/maintenance/scheduled") != "[]" || len(hist) != 1 || hist[0]["State"] != "completed" ||
		!strings.HasPrefix(hist[0]["Description"], "[Completed] ") {
		t.Errorf("after completion: scheduled %q, history %v", poll(t, c, "events/maintenance/scheduled"), hist)
	}

	// Auto Scaling transition.
	if got := poll(t, c, "autoscaling/target-lifecycle-state"); got != "InService" {
		t.Errorf("target-lifecycle-state %q, want InService", got)
	}
	trigger(ec2.EventRequest{Type: "asg", State: "Terminated"})
	if got := poll(t, c, "autoscaling/target-lifecycle-state"); got != "Terminated" {
		t.Errorf("after the transition %q, want Terminated", got)
	}

	// Clear returns the instance to its defined self.
	trigger(ec2.EventRequest{Type: "clear"})
	if poll(t, c, "spot/instance-action") != "" || poll(t, c, "instance-life-cycle") != "on-demand" ||
		poll(t, c, "autoscaling/target-lifecycle-state") != "InService" {
		t.Errorf("clear did not restore the instance")
	}
}

// TestEventCLIAgainstServer drives events with the CLI on a running server.
func TestEventCLIAgainstServer(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	c := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(context.Background(), append(args, "--admin-socket", sock), &out, &errOut); code != 0 {
			t.Fatalf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	cli("event", "spot", "default", "--action", "hibernate", "--in", "5m")
	if got := poll(t, c, "spot/instance-action"); !strings.Contains(got, `"action": "hibernate"`) {
		t.Errorf("after imds event spot: %q", got)
	}
	if got := poll(t, c, "spot/termination-time"); got != "" {
		t.Errorf("termination-time for a hibernation = %q, want 404 (terminate only)", got)
	}
	out := cli("event", "maintenance", "default", "--code", "instance-stop", "-o", "json")
	var doc struct {
		Maintenance []struct {
			EventID string `json:"event_id"`
		} `json:"maintenance"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Maintenance) != 1 {
		t.Fatalf("imds event maintenance -o json: %v\n%s", err, out)
	}
	cli("event", "maintenance", "default", "--cancel", doc.Maintenance[0].EventID)
	if got := poll(t, c, "events/maintenance/history"); !strings.Contains(got, `"State" : "canceled"`) {
		t.Errorf("history after cancel: %s", got)
	}
	cli("event", "clear", "default")
	if got := poll(t, c, "spot/instance-action"); got != "" {
		t.Errorf("after clear: %q", got)
	}

	// A notice for later: shown as scheduled, 404 at the instance until its
	// notice time; a new notice replaces it, and a past --at is refused.
	at := time.Now().UTC().Add(time.Hour).Truncate(time.Second).Format(time.RFC3339)
	out = cli("event", "spot", "default", "--action", "stop", "--at", at)
	if want := "spot interruption:        scheduled: stop at " + at + "; spot/instance-action answers 404 until "; !strings.Contains(out, want) {
		t.Errorf("imds event spot --at %s printed\n%s\nwant a line with %q", at, out, want)
	}
	if got := poll(t, c, "spot/instance-action"); got != "" {
		t.Errorf("an hour before the action, spot/instance-action = %q, want 404", got)
	}
	if got := poll(t, c, "instance-life-cycle"); got != "spot" {
		t.Errorf("instance-life-cycle with a scheduled notice = %q, want spot", got)
	}
	out = cli("event", "spot", "default")
	if !strings.Contains(out, "replaced spot notice:     stop at "+at) || !strings.Contains(out, "spot interruption:        terminate at ") {
		t.Errorf("the second notice printed\n%s\nwant it to replace the first", out)
	}
	if got := poll(t, c, "spot/instance-action"); !strings.Contains(got, `"action": "terminate"`) {
		t.Errorf("after the second notice: %q", got)
	}
	out = cli("event", "asg", "default", "Terminated", "-o", "json")
	if !strings.Contains(out, `"autoscaling_state": "Terminated"`) {
		t.Errorf("imds event asg -o json lacks the state:\n%s", out)
	}
	var errOut strings.Builder
	if code := run(context.Background(), []string{"event", "spot", "default", "--at", "2020-01-01T00:00:00Z", "--admin-socket", sock}, io.Discard, &errOut); code == 0 ||
		!strings.HasPrefix(errOut.String(), "imds: --at: 2020-01-01T00:00:00Z is in the past") {
		t.Errorf("past --at: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"event", "spot", "nope", "--admin-socket", sock}, io.Discard, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), `no instance named "nope"`) {
		t.Errorf("unknown instance: exit %d, %q", code, errOut.String())
	}
}

// TestScheduledEventsFromConfig: a spot notice scheduled ten minutes after
// start-up appears then, not before.
func TestScheduledEventsFromConfig(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	srv := startTestServer(t, "instance:\n  schedule:\n    - event: spot\n      after: 10m\n      action: stop\n", "", clk)
	c := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	clk.Advance(9 * time.Minute)
	if got := poll(t, c, "spot/instance-action"); got != "" {
		t.Fatalf("spot notice after 9 minutes: %q", got)
	}
	clk.Advance(time.Minute)
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	got := ""
	for got == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		got = poll(t, c, "spot/instance-action")
	}
	if !strings.Contains(got, `"action": "stop"`) {
		t.Errorf("spot notice after 10 minutes: %q", got)
	}
}
