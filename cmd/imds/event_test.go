package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// eventService records event requests and answers with canned events; it
// knows the instance "web-1" only.
type eventService struct {
	mu     sync.Mutex
	got    []ec2.EventRequest
	events ec2.Events
}

func (f *eventService) TriggerEvent(_ context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
	if name != "web-1" {
		return ec2.Events{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.events, nil
}

func (f *eventService) requests() []ec2.EventRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ec2.EventRequest(nil), f.got...)
}

var eventT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // fixed instant: the CLI's injected clock only

func TestEventCommands(t *testing.T) {
	clk := clock.NewFake(eventT0.Add(123 * time.Millisecond))
	fake := &eventService{}
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, func(s *admin.Server) { s.Events = fake })
	sock := "--admin-socket=" + srv.SocketPath

	for _, tt := range []struct {
		args []string
		want ec2.EventRequest
	}{
		{[]string{"spot", "web-1"}, ec2.EventRequest{Type: "spot", Action: "terminate", Lead: 2 * time.Minute}},
		{[]string{"spot", "web-1", "--action", "hibernate", "--in", "30s"}, ec2.EventRequest{Type: "spot", Action: "hibernate", Lead: 30 * time.Second}},
		{[]string{"spot", "web-1", "--action=stop", "--at", "2026-01-02T07:00:00+02:00"},
			ec2.EventRequest{Type: "spot", Action: "stop", At: time.Date(2026, 1, 2, 5, 0, 0, 0, time.UTC)}}, // fixed instant: parsed and echoed, compared with the fake clock only
		{[]string{"spot", "web-1", "--at", "2026-01-02T03:04:05Z"}, // the fake clock's second: not in the past
			ec2.EventRequest{Type: "spot", Action: "terminate", At: eventT0}},
		{[]string{"rebalance", "web-1"}, ec2.EventRequest{Type: "rebalance"}},
		{[]string{"maintenance", "web-1"}, ec2.EventRequest{Type: "maintenance", Code: "system-reboot", Duration: 20 * time.Minute}},
		{[]string{"maintenance", "web-1", "--code", "instance-retirement", "--description", "old hardware", "--in", "2h", "--duration", "1h"},
			ec2.EventRequest{Type: "maintenance", Code: "instance-retirement", Description: "old hardware", NotBefore: eventT0.Add(2 * time.Hour), Duration: time.Hour}},
		{[]string{"maintenance", "web-1", "--not-before", "2026-02-01T00:00:00Z"},
			ec2.EventRequest{Type: "maintenance", Code: "system-reboot", NotBefore: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Duration: 20 * time.Minute}}, // fixed instant: parsed and echoed, compared with no clock
		{[]string{"maintenance", "web-1", "--complete", "instance-event-0123456789abcdef0"},
			ec2.EventRequest{Type: "maintenance-complete", EventID: "instance-event-0123456789abcdef0"}},
		{[]string{"maintenance", "web-1", "--cancel", "instance-event-0123456789abcdef0"},
			ec2.EventRequest{Type: "maintenance-cancel", EventID: "instance-event-0123456789abcdef0"}},
		{[]string{"asg", "web-1", "Warmed:Stopped"}, ec2.EventRequest{Type: "asg", State: "Warmed:Stopped"}},
		{[]string{"asg", "web-1", "terminated"}, ec2.EventRequest{Type: "asg", State: "Terminated"}},
		{[]string{"clear", "web-1"}, ec2.EventRequest{Type: "clear"}},
	} {
		args := append(append([]string{"event"}, tt.args...), sock)
		var errBuf strings.Builder
		code := runWith(context.Background(), clk, args, io.Discard, &errBuf)
		errOut := errBuf.String()
		if code != 0 {
			t.Errorf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut)
			continue
		}
		got := fake.requests()
		if len(got) == 0 || !reflect.DeepEqual(normalize(got[len(got)-1]), normalize(tt.want)) {
			t.Errorf("imds %s: the server got %+v, want %+v", strings.Join(args, " "), got[len(got)-1], tt.want)
		}
	}

	_, errOut, code := runArgs("event", "clear", "db-1", sock)
	if code == 0 || errOut != "imds: no instance named \"db-1\"\n" {
		t.Errorf("event clear db-1: exit %d, stderr %q", code, errOut)
	}
}

// normalize makes times comparable with DeepEqual.
func normalize(r ec2.EventRequest) ec2.EventRequest {
	if !r.At.IsZero() {
		r.At = r.At.UTC()
	}
	if !r.NotBefore.IsZero() {
		r.NotBefore = r.NotBefore.UTC()
	}
	return r
}

// TestEventOutput: what `imds event` prints for each state of the events,
// in the table and in the JSON document.
func TestEventOutput(t *testing.T) {
	fake := &eventService{}
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, func(s *admin.Server) { s.Events = fake })
	sock := "--admin-socket=" + srv.SocketPath
	maint := []ec2.MaintenanceEvent{{ID: "instance-event-0123456789abcdef0", Code: "system-reboot", Description: "scheduled reboot",
		State: "active", NotBefore: eventT0.Add(time.Hour), NotAfter: eventT0.Add(80 * time.Minute)}}
	const none = "rebalance recommendation: none\nmaintenance events:       none\n"

	tests := []struct {
		name   string
		events ec2.Events
		want   string // the table after "events of web-1:\n"
		json   []string
	}{
		{name: "nothing", want: "spot interruption:        none\n" + none + "auto scaling state:       none\n",
			json: []string{`"spot":null`, `"spot_scheduled":null`, `"autoscaling_state":""`}},
		{name: "shown spot notice, rebalance, maintenance", events: ec2.Events{
			Spot:      &ec2.SpotNotice{Action: "terminate", Time: eventT0.Add(2 * time.Minute), Notice: eventT0},
			Rebalance: eventT0, Maintenance: maint},
			want: "spot interruption:        terminate at 2026-01-02T03:06:05Z, shown now at spot/instance-action and spot/termination-time\n" +
				"rebalance recommendation: since 2026-01-02T03:04:05Z\n" +
				"maintenance events:\n" +
				"EVENT-ID                          CODE           STATE   NOT-BEFORE            NOT-AFTER\n" +
				"instance-event-0123456789abcdef0  system-reboot  active  2026-01-02T04:04:05Z  2026-01-02T04:24:05Z\n" +
				"auto scaling state:       none\n",
			json: []string{`"spot":{"action":"terminate","time":"2026-01-02T03:06:05Z","notice_time":"2026-01-02T03:04:05Z"}`, `"event_id":"instance-event-0123456789abcdef0"`}},
		{name: "scheduled spot notice", events: ec2.Events{
			SpotScheduled: &ec2.SpotNotice{Action: "stop", Time: eventT0.Add(time.Hour), Notice: eventT0.Add(58 * time.Minute)}},
			want: "spot interruption:        scheduled: stop at 2026-01-02T04:04:05Z; spot/instance-action answers 404 until 2026-01-02T04:02:05Z, then show it\n" +
				none + "auto scaling state:       none\n",
			json: []string{`"spot":null`, `"spot_scheduled":{"action":"stop","time":"2026-01-02T04:04:05Z","notice_time":"2026-01-02T04:02:05Z"}`}},
		{name: "replaced spot notice", events: ec2.Events{
			SpotReplaced:  &ec2.SpotNotice{Action: "terminate", Time: eventT0.Add(2 * time.Minute), Notice: eventT0},
			SpotScheduled: &ec2.SpotNotice{Action: "terminate", Time: eventT0.Add(time.Hour), Notice: eventT0.Add(58 * time.Minute)}},
			want: "replaced spot notice:     terminate at 2026-01-02T03:06:05Z\n" +
				"spot interruption:        scheduled: terminate at 2026-01-02T04:04:05Z; spot/instance-action and spot/termination-time answer 404 until 2026-01-02T04:02:05Z, then show it\n" +
				none + "auto scaling state:       none\n",
			json: []string{`"spot_replaced":{"action":"terminate","time":"2026-01-02T03:06:05Z"`}},
		{name: "auto scaling state", events: ec2.Events{AutoscalingState: "Terminated"},
			want: "spot interruption:        none\n" + none + "auto scaling state:       Terminated\n",
			json: []string{`"autoscaling_state":"Terminated"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.events = tt.events
			out, errOut, code := runArgs("event", "rebalance", "web-1", sock)
			if want := "events of web-1:\n" + tt.want; code != 0 || out != want {
				t.Errorf("table: exit %d, %s\nstdout:\n%s\nwant:\n%s", code, errOut, out, want)
			}
			out, errOut, code = runArgs("event", "rebalance", "web-1", "-o", "json", sock)
			var compact bytes.Buffer
			if code != 0 || json.Compact(&compact, []byte(out)) != nil || !strings.HasSuffix(out, "}\n") {
				t.Fatalf("-o json: exit %d, %s\n%s", code, errOut, out)
			}
			for _, w := range tt.json {
				if !strings.Contains(compact.String(), w) {
					t.Errorf("-o json lacks %s:\n%s", w, out)
				}
			}
		})
	}
	fake.events = ec2.Events{Maintenance: maint}
	out, _, code := runArgs("event", "rebalance", "web-1", "-o", "yaml", sock)
	if code != 0 || !strings.Contains(out, "event_id: instance-event-0123456789abcdef0\n") {
		t.Errorf("-o yaml: exit %d\n%s", code, out)
	}
}

func TestEventFlagValidation(t *testing.T) {
	// No server: every one of these must fail before trying to reach it.
	sock := "--admin-socket=" + filepath.Join(admintest.SocketDir(t), "none.sock")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"spot", "web-1", "--action", "explode"}, `--action: must be one of terminate, stop, hibernate, got "explode"`},
		{[]string{"spot", "web-1", "--in", "soon"}, `--in: must be a duration like 30s, 5m or 1h, got "soon"`},
		{[]string{"spot", "web-1", "--in", "0s"}, "--in: must be positive"},
		{[]string{"spot", "web-1", "--at", "tomorrow"}, `--at: must be an RFC 3339 time like 2026-01-02T15:04:05Z, got "tomorrow"`},
		{[]string{"spot", "web-1", "--in", "1m", "--at", "2026-01-02T15:04:05Z"}, "--in and --at: give one of them"},
		{[]string{"spot", "web-1", "--at", "2020-01-02T15:04:05+01:00"}, "--at: 2020-01-02T14:04:05Z is in the past (now is "},
		{[]string{"spot"}, "event spot needs an instance NAME"},
		{[]string{"maintenance", "web-1", "--code", "reboot"}, `--code: must be one of instance-reboot, system-reboot,`},
		{[]string{"maintenance", "web-1", "--duration", "20"}, `--duration: must be a duration like 30s, 5m or 1h, got "20"`},
		{[]string{"maintenance", "web-1", "--duration", "-5m"}, "--duration: must be positive"},
		{[]string{"maintenance", "web-1", "--in", "-1h"}, "--in: must not be negative"},
		{[]string{"maintenance", "web-1", "--not-before", "2026-01-02"}, "--not-before: must be an RFC 3339 time"},
		{[]string{"maintenance", "web-1", "--in", "1h", "--not-before", "2026-01-02T15:04:05Z"}, "--in and --not-before: give one of them"},
		{[]string{"maintenance", "web-1", "--complete", "e1", "--cancel", "e1"}, "--complete and --cancel: cannot be combined"},
		{[]string{"maintenance", "web-1", "--cancel", "e1", "--code", "system-reboot"}, "--cancel and --code: cannot be combined"},
		{[]string{"maintenance", "web-1", "--complete", ""}, "--complete: needs an event ID"},
		{[]string{"asg", "web-1", "Gone"}, `STATE: must be one of Detached, InService,`},
		{[]string{"asg", "web-1"}, "event asg needs an instance NAME and a STATE (Detached, InService,"},
		{[]string{"clear", "web-1", "-o", "xml"}, `-o/--output: must be table, json or yaml, got "xml"`},
	} {
		args := append(append([]string{"event"}, tt.args...), sock)
		_, errOut, code := runArgs(args...)
		if code == 0 || !strings.HasPrefix(errOut, "imds: ") || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 ||
			strings.Contains(errOut, "cannot reach") {
			t.Errorf("imds %s: exit %d, stderr %q, want one line with %q", strings.Join(args, " "), code, errOut, tt.want)
		}
	}
}

func TestEventUnsupported(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, nil)
	_, errOut, code := runArgs("event", "clear", "web-1", "--admin-socket", srv.SocketPath)
	if code == 0 || errOut != "imds: this server cannot trigger events\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
