package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// fakeEvents is an ec2.EventService that records the requests it gets and
// answers with canned events; it knows the instance "web-1" only.
type fakeEvents struct {
	mu     sync.Mutex
	got    []ec2.EventRequest
	events ec2.Events
}

func (f *fakeEvents) TriggerEvent(_ context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
	if name != "web-1" {
		return ec2.Events{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.events, nil
}

func (f *fakeEvents) last(t *testing.T) ec2.EventRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("the service got no request")
	}
	return f.got[len(f.got)-1]
}

func (f *fakeEvents) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

var (
	evT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // fixed instant: events passed through a fake service
	// cannedEvents has every kind of event, its times in another zone.
	cannedEvents = ec2.Events{
		Spot:             &ec2.SpotNotice{Action: ec2.SpotStop, Time: evT0.Add(2 * time.Minute).In(time.FixedZone("X", 3600)), Notice: evT0},
		SpotScheduled:    &ec2.SpotNotice{Action: ec2.SpotTerminate, Time: evT0.Add(time.Hour), Notice: evT0.Add(58 * time.Minute)},
		Rebalance:        evT0,
		AutoscalingState: "Terminated",
		Maintenance: []ec2.MaintenanceEvent{
			{ID: "instance-event-0123456789abcdef0", Code: "system-reboot", Description: "scheduled reboot", State: ec2.MaintenanceActive,
				NotBefore: evT0.Add(time.Hour), NotAfter: evT0.Add(time.Hour + 20*time.Minute)},
			{ID: "instance-event-0123456789abcdef1", Code: "instance-stop", Description: "[Canceled] stop", State: ec2.MaintenanceCanceled,
				NotBefore: evT0.Add(-time.Hour), NotAfter: evT0.Add(-time.Hour + 20*time.Minute)},
		},
	}
)

func openEventServer(t *testing.T, ev ec2.EventService) *admin.Server {
	t.Helper()
	return admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.Events = ev
	})
}

func TestClient_TriggerEvent(t *testing.T) {
	ctx := context.Background()
	fake := &fakeEvents{events: cannedEvents}
	srv := openEventServer(t, fake)
	c := admin.NewClient(srv.SocketPath)

	for _, req := range []ec2.EventRequest{
		{Type: "spot", Action: ec2.SpotHibernate, At: evT0.Add(90 * time.Second), Lead: 2*time.Minute + 500*time.Millisecond},
		{Type: "spot"},
		{Type: "rebalance"},
		{Type: "maintenance", Code: "instance-retirement", Description: "retire <now> & go",
			NotBefore: evT0.Add(time.Hour).In(time.FixedZone("Y", -7200)), Duration: 90 * time.Minute},
		{Type: "maintenance-complete", EventID: "instance-event-0123456789abcdef0"},
		{Type: "maintenance-cancel", EventID: "instance-event-0123456789abcdef0"},
		{Type: "asg", State: "Warmed:Stopped"},
		{Type: "clear"},
	} {
		ev, err := c.TriggerEvent(ctx, "web-1", req)
		if err != nil {
			t.Fatalf("TriggerEvent(%+v): %v", req, err)
		}
		got := fake.last(t)
		if got.Type != req.Type || got.Action != req.Action || !got.At.Equal(req.At) || got.Lead != req.Lead ||
			got.Code != req.Code || got.Description != req.Description || !got.NotBefore.Equal(req.NotBefore) ||
			got.Duration != req.Duration || got.EventID != req.EventID || got.State != req.State {
			t.Errorf("the service got %+v, want %+v", got, req)
		}
		if !eventsEqual(ev, cannedEvents) {
			t.Errorf("TriggerEvent returned %+v, want %+v", ev, cannedEvents)
		}
	}

	// No events at all.
	fake.events = ec2.Events{}
	ev, err := c.TriggerEvent(ctx, "web-1", ec2.EventRequest{Type: "clear"})
	if err != nil || ev.Spot != nil || !ev.Rebalance.IsZero() || len(ev.Maintenance) != 0 {
		t.Errorf("TriggerEvent(clear) = %+v, %v; want no events", ev, err)
	}

	if _, err := c.TriggerEvent(ctx, "nope", ec2.EventRequest{Type: "clear"}); ec2.ErrorCode(err) != ec2.ENOTFOUND ||
		ec2.ErrorMessage(err) != `no instance named "nope"` {
		t.Errorf("TriggerEvent(nope) = %v, want ENOTFOUND", err)
	}
	if _, err := c.TriggerEvent(ctx, "", ec2.EventRequest{Type: "clear"}); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("TriggerEvent(\"\") = %v, want EINVALID", err)
	}
	if _, err := c.TriggerEvent(ctx, "web-1", ec2.EventRequest{Type: "spot", Lead: -time.Second}); ec2.ErrorCode(err) != ec2.EINVALID ||
		!strings.Contains(ec2.ErrorMessage(err), "lead: must be positive") {
		t.Errorf("TriggerEvent(negative lead) = %v, want EINVALID naming lead", err)
	}
}

// eventsEqual compares events by instant.
func eventsEqual(a, b ec2.Events) bool {
	if !a.Rebalance.Equal(b.Rebalance) || len(a.Maintenance) != len(b.Maintenance) || a.AutoscalingState != b.AutoscalingState {
		return false
	}
	for _, sp := range [][2]*ec2.SpotNotice{{a.Spot, b.Spot}, {a.SpotScheduled, b.SpotScheduled}} {
		x, y := sp[0], sp[1]
		if (x == nil) != (y == nil) || x != nil && (x.Action != y.Action || !x.Time.Equal(y.Time) || !x.Notice.Equal(y.Notice)) {
			return false
		}
	}
	for i, m := range a.Maintenance {
		n := b.Maintenance[i]
		if !m.NotBefore.Equal(n.NotBefore) || !m.NotAfter.Equal(n.NotAfter) {
			return false
		}
		m.NotBefore, m.NotAfter, n.NotBefore, n.NotAfter = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(m, n) {
			return false
		}
	}
	return true
}

func TestServer_EventBodies(t *testing.T) {
	fake := &fakeEvents{events: cannedEvents}
	srv := openEventServer(t, fake)
	hc := unixHTTP(srv.SocketPath)
	url := "http://imds/v1/instances/web-1/events"
	jsonType := map[string]string{"Content-Type": "application/json"}

	// The response document.
	r := do(t, hc, http.MethodPost, url, jsonType, `{"type":"rebalance"}`)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST events: %d %s", r.status, r.body)
	}
	want := `{"spot":{"action":"stop","time":"2026-01-02T03:06:05Z","notice_time":"2026-01-02T03:04:05Z"},` +
		`"spot_scheduled":{"action":"terminate","time":"2026-01-02T04:04:05Z","notice_time":"2026-01-02T04:02:05Z"},"rebalance":"2026-01-02T03:04:05Z","maintenance":[` +
		`{"event_id":"instance-event-0123456789abcdef0","code":"system-reboot","description":"scheduled reboot","state":"active","not_before":"2026-01-02T04:04:05Z","not_after":"2026-01-02T04:24:05Z"},` +
		`{"event_id":"instance-event-0123456789abcdef1","code":"instance-stop","description":"[Canceled] stop","state":"canceled","not_before":"2026-01-02T02:04:05Z","not_after":"2026-01-02T02:24:05Z"}],"autoscaling_state":"Terminated"}` + "\n"
	if r.body != want {
		t.Errorf("body =\n%s\nwant\n%s", r.body, want)
	}
	fake.events = ec2.Events{}
	if r := do(t, hc, http.MethodPost, url, nil, `{"type":"clear"}`); r.body != `{"spot":null,"spot_scheduled":null,"rebalance":null,"maintenance":[],"autoscaling_state":""}`+"\n" {
		t.Errorf("empty events: %d %s", r.status, r.body)
	}

	// The request fields, as the service gets them.
	do(t, hc, http.MethodPost, url, jsonType, `{"type":"spot","action":"hibernate","at":"2026-01-02T05:00:00+02:00","lead":"1m30s"}`)
	if got := fake.last(t); got.Action != "hibernate" || !got.At.Equal(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)) || got.Lead != 90*time.Second { // fixed instant: parsed and compared, no clock
		t.Errorf("spot request = %+v", got)
	}
	do(t, hc, http.MethodPost, url, jsonType, `{"type":"maintenance","code":"instance-reboot","description":"d","not_before":"2026-01-02T03:04:05Z","duration":"2h"}`)
	if got := fake.last(t); got.Code != "instance-reboot" || got.Description != "d" || !got.NotBefore.Equal(evT0) || got.Duration != 2*time.Hour {
		t.Errorf("maintenance request = %+v", got)
	}

	n := fake.count()
	for _, tt := range []struct {
		name, ctype, body string
		want              string
	}{
		{"unknown field", "application/json", `{"type":"spot","lead_time":"2m"}`, `unknown field "lead_time"`},
		{"no type", "", `{}`, "type: required"},
		{"bad type", "", `{"type":"meteor"}`, `type: must be one of spot, rebalance, maintenance, maintenance-complete, maintenance-cancel, asg, clear, got "meteor"`},
		{"bad action", "", `{"type":"spot","action":"explode"}`, `action: must be one of terminate, stop, hibernate, got "explode"`},
		{"bad code", "", `{"type":"maintenance","code":"reboot"}`, `code: must be one of instance-reboot,`},
		{"bad state", "", `{"type":"asg","state":"Gone"}`, `state: must be one of Detached,`},
		{"no state", "", `{"type":"asg"}`, `state: required for type asg`},
		{"no event id", "", `{"type":"maintenance-cancel"}`, `event_id: required for type maintenance-cancel`},
		{"field of another type", "", `{"type":"spot","code":"system-reboot"}`, `code: not used by type spot (its fields: action, at, lead)`},
		{"field of a bare type", "", `{"type":"clear","state":"InService"}`, `state: not used by type clear`},
		{"bad time", "", `{"type":"spot","at":"tomorrow"}`, `at: must be an RFC 3339 time`},
		{"bad duration", "", `{"type":"maintenance","duration":"20"}`, `duration: must be a duration like 2m or 1h30m, got "20"`},
		{"zero duration", "", `{"type":"spot","lead":"0s"}`, `lead: must be positive`},
		{"wrong JSON type", "", `{"type":"spot","lead":120}`, `lead: must be a string, got a JSON number`},
		{"not an object", "", `["spot"]`, `the body must be a JSON object`},
		{"not JSON", "", `type=spot`, `the body is not valid JSON`},
		{"truncated", "", `{"type":"spot"`, `the body is not valid JSON`},
		{"two objects", "", `{"type":"spot"}{"type":"clear"}`, `the body must hold one JSON object and nothing after it`},
		{"empty", "", ``, `the body must be a JSON object like {"type": "spot"}`},
		{"form", "application/x-www-form-urlencoded", `{"type":"spot"}`, `Content-Type must be application/json`},
		{"too big", "", `{"type":"maintenance","description":"` + strings.Repeat("x", admin.DefaultMaxBody) + `"}`, "request body larger than 1048576 bytes"},
	} {
		h := map[string]string{}
		if tt.ctype != "" {
			h["Content-Type"] = tt.ctype
		}
		r := do(t, hc, http.MethodPost, url, h, tt.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || r.status != http.StatusBadRequest ||
			body.Error.Code != ec2.EINVALID || !strings.Contains(body.Error.Message, tt.want) {
			t.Errorf("%s: %d %s, want 400 invalid with %q", tt.name, r.status, r.body, tt.want)
		}
	}
	if fake.count() != n {
		t.Errorf("invalid requests reached the service")
	}

	if r := do(t, hc, http.MethodPost, "http://imds/v1/instances/nope/events", nil, `{"type":"clear"}`); r.status != http.StatusNotFound ||
		!strings.Contains(r.body, `"code":"not_found"`) {
		t.Errorf("unknown instance: %d %s", r.status, r.body)
	}
	if r := do(t, hc, http.MethodGet, url, nil, ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" ||
		!strings.Contains(r.body, `"code":"method"`) {
		t.Errorf("GET events: %d %v %s", r.status, r.header, r.body)
	}
}

func TestServer_EventsUnsupported(t *testing.T) {
	srv := openEventServer(t, nil)
	_, err := admin.NewClient(srv.SocketPath).TriggerEvent(context.Background(), "web-1", ec2.EventRequest{Type: "clear"})
	if ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("TriggerEvent without Events = %v, want EUNSUPPORTED", err)
	}
	r := do(t, unixHTTP(srv.SocketPath), http.MethodPost, "http://imds/v1/instances/web-1/events", nil, `{"type":"clear"}`)
	if r.status != http.StatusNotImplemented || !strings.Contains(r.body, `"code":"not_supported"`) {
		t.Errorf("POST events without Events: %d %s", r.status, r.body)
	}
}
