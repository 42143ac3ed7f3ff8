package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// eventRequestBody is the body of POST /v1/instances/{name}/events:
// durations are Go duration strings, times RFC 3339.
type eventRequestBody struct {
	Type        string `json:"type"`
	Action      string `json:"action,omitempty"`
	At          string `json:"at,omitempty"`
	Lead        string `json:"lead,omitempty"`
	Code        string `json:"code,omitempty"`
	Description string `json:"description,omitempty"`
	NotBefore   string `json:"not_before,omitempty"`
	Duration    string `json:"duration,omitempty"`
	EventID     string `json:"event_id,omitempty"`
	State       string `json:"state,omitempty"`
}

// eventsBody is the response of POST /v1/instances/{name}/events: the
// instance's events afterwards.
type eventsBody struct {
	// Spot is the notice the instance shows, SpotScheduled one it will
	// show from its notice_time.
	Spot          *spotBody         `json:"spot"`
	SpotScheduled *spotBody         `json:"spot_scheduled"`
	Rebalance     *time.Time        `json:"rebalance"`
	Maintenance   []maintenanceBody `json:"maintenance"`
	// AutoscalingState is autoscaling/target-lifecycle-state, "" for none.
	AutoscalingState string `json:"autoscaling_state"`
	// SpotReplaced is the notice a spot request replaced.
	SpotReplaced *spotBody `json:"spot_replaced,omitempty"`
}

type spotBody struct {
	Action     string    `json:"action"`
	Time       time.Time `json:"time"`
	NoticeTime time.Time `json:"notice_time"`
}

func spotDocument(n *ec2.SpotNotice) *spotBody {
	if n == nil {
		return nil
	}
	return &spotBody{Action: n.Action, Time: n.Time.UTC(), NoticeTime: n.Notice.UTC()}
}

func (b *spotBody) notice() *ec2.SpotNotice {
	if b == nil {
		return nil
	}
	return &ec2.SpotNotice{Action: b.Action, Time: b.Time, Notice: b.NoticeTime}
}

type maintenanceBody struct {
	EventID     string    `json:"event_id"`
	Code        string    `json:"code"`
	Description string    `json:"description"`
	State       string    `json:"state"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// MarshalEvents renders events as the admin API does (times in UTC, RFC
// 3339), followed by a newline.
func MarshalEvents(ev ec2.Events) ([]byte, error) {
	return encodeJSON(eventsDocument(ev))
}

func eventsDocument(ev ec2.Events) eventsBody {
	body := eventsBody{Maintenance: make([]maintenanceBody, 0, len(ev.Maintenance)),
		Spot: spotDocument(ev.Spot), SpotScheduled: spotDocument(ev.SpotScheduled), AutoscalingState: ev.AutoscalingState,
		SpotReplaced: spotDocument(ev.SpotReplaced)}
	if !ev.Rebalance.IsZero() {
		t := ev.Rebalance.UTC()
		body.Rebalance = &t
	}
	for _, m := range ev.Maintenance {
		body.Maintenance = append(body.Maintenance, maintenanceBody{
			EventID: m.ID, Code: m.Code, Description: m.Description, State: m.State,
			NotBefore: m.NotBefore.UTC(), NotAfter: m.NotAfter.UTC(),
		})
	}
	return body
}

func (b *eventsBody) events() ec2.Events {
	ev := ec2.Events{Spot: b.Spot.notice(), SpotScheduled: b.SpotScheduled.notice(), AutoscalingState: b.AutoscalingState,
		SpotReplaced: b.SpotReplaced.notice()}
	if b.Rebalance != nil {
		ev.Rebalance = *b.Rebalance
	}
	for _, m := range b.Maintenance {
		ev.Maintenance = append(ev.Maintenance, ec2.MaintenanceEvent{
			ID: m.EventID, Code: m.Code, Description: m.Description, State: m.State,
			NotBefore: m.NotBefore, NotAfter: m.NotAfter,
		})
	}
	return ev
}

// handleEvent triggers an event on the named instance and answers with its
// events afterwards.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) error {
	if s.Events == nil {
		return ec2.Errorf(ec2.EUNSUPPORTED, "this server cannot trigger events")
	}
	req, err := readEventRequest(r)
	if err != nil {
		return err
	}
	ev, err := s.Events.TriggerEvent(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	body, err := MarshalEvents(ev)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// readEventRequest decodes and checks the body of an event request; every
// error names the field at fault.
func readEventRequest(r *http.Request) (ec2.EventRequest, error) {
	var req ec2.EventRequest
	data, err := readBody(r, jsonBody)
	if err != nil {
		return req, err
	}
	body, err := decodeEventBody(data)
	if err != nil {
		return req, err
	}
	return body.request()
}

// decodeEventBody decodes one JSON object strictly.
func decodeEventBody(data []byte) (*eventRequestBody, error) {
	var body eventRequestBody
	err := strictJSON{
		empty:  `the body must be a JSON object like {"type": "spot"}`,
		kind:   func(string) string { return "a string" },
		fields: "type, action, at, lead, code, description, not_before, duration, event_id, state",
	}.decode(data, &body)
	if err != nil {
		return nil, err
	}
	return &body, nil
}

// request converts the body and checks it with ec2.EventRequest.Validate.
func (b *eventRequestBody) request() (ec2.EventRequest, error) {
	req := ec2.EventRequest{Type: b.Type, Action: b.Action, Code: b.Code, Description: b.Description,
		EventID: b.EventID, State: b.State}
	var err error
	if req.At, err = parseEventTime("at", b.At); err != nil {
		return req, err
	}
	if req.NotBefore, err = parseEventTime("not_before", b.NotBefore); err != nil {
		return req, err
	}
	if req.Lead, err = parseEventDuration("lead", b.Lead); err != nil {
		return req, err
	}
	if req.Duration, err = parseEventDuration("duration", b.Duration); err != nil {
		return req, err
	}
	return req, req.Validate()
}

func parseEventTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, ec2.Errorf(ec2.EINVALID, "%s: must be an RFC 3339 time like 2026-01-02T15:04:05Z, got %q", field, s)
	}
	return t, nil
}

// parseEventDuration parses a positive Go duration.
func parseEventDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ec2.Errorf(ec2.EINVALID, "%s: must be a duration like 2m or 1h30m, got %q", field, s)
	}
	if d <= 0 {
		return 0, ec2.Errorf(ec2.EINVALID, "%s: must be positive, got %q", field, s)
	}
	return d, nil
}

// TriggerEvent implements ec2.EventService over the admin API.
func (c *Client) TriggerEvent(ctx context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
	path, err := instancePath(name)
	if err != nil {
		return ec2.Events{}, err
	}
	body := eventRequestBody{Type: req.Type, Action: req.Action, Code: req.Code, Description: req.Description,
		EventID: req.EventID, State: req.State}
	if !req.At.IsZero() {
		body.At = req.At.Format(time.RFC3339Nano)
	}
	if !req.NotBefore.IsZero() {
		body.NotBefore = req.NotBefore.Format(time.RFC3339Nano)
	}
	if req.Lead != 0 {
		body.Lead = req.Lead.String()
	}
	if req.Duration != 0 {
		body.Duration = req.Duration.String()
	}
	data, err := json.Marshal(body)
	if err != nil {
		return ec2.Events{}, fmt.Errorf("admin API: encode event request: %w", err)
	}
	var out eventsBody
	if err := c.do(ctx, http.MethodPost, path+"/events", "application/json", data, &out); err != nil {
		return ec2.Events{}, err
	}
	return out.events(), nil
}

var _ ec2.EventService = (*Client)(nil)
