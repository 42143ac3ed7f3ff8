package ec2

import (
	"strings"
	"testing"
	"time"
)

func TestEventRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		req     EventRequest
		wantErr string // "" for valid
	}{
		{name: "spot", req: EventRequest{Type: EventSpot, Action: SpotStop, Lead: time.Minute}},
		{name: "rebalance", req: EventRequest{Type: EventRebalance}},
		{name: "maintenance", req: EventRequest{Type: EventMaintenance, Code: "instance-reboot", Duration: time.Hour}},
		{name: "complete", req: EventRequest{Type: EventMaintenanceComplete, EventID: "instance-event-0123456789abcdef0"}},
		{name: "asg", req: EventRequest{Type: EventAutoscaling, State: "Terminated"}},
		{name: "clear", req: EventRequest{Type: EventClear}},
		{name: "no type", req: EventRequest{}, wantErr: "type: required"},
		{name: "unknown type", req: EventRequest{Type: "reboot"}, wantErr: `type: must be one of spot, rebalance`},
		{name: "field of another type", req: EventRequest{Type: EventSpot, Code: "system-reboot"}, wantErr: "code: not used by type spot (its fields: action, at, lead)"},
		{name: "field of a type without fields", req: EventRequest{Type: EventClear, State: "x"}, wantErr: "which takes no other field"},
		{name: "bad action", req: EventRequest{Type: EventSpot, Action: "reboot"}, wantErr: "action: must be one of terminate, stop, hibernate"},
		{name: "bad code", req: EventRequest{Type: EventMaintenance, Code: "fix"}, wantErr: "code: must be one of"},
		{name: "asg without state", req: EventRequest{Type: EventAutoscaling}, wantErr: "state: required for type asg"},
		{name: "bad state", req: EventRequest{Type: EventAutoscaling, State: "Gone"}, wantErr: `state: must be one of`},
		{name: "cancel without ID", req: EventRequest{Type: EventMaintenanceCancel}, wantErr: "event_id: required"},
		{name: "negative lead", req: EventRequest{Type: EventSpot, Lead: -time.Second}, wantErr: "lead: must not be negative"},
		{name: "negative duration", req: EventRequest{Type: EventMaintenance, Duration: -time.Second}, wantErr: "duration: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if ErrorCode(err) != EINVALID || !strings.Contains(ErrorMessage(err), tt.wantErr) {
				t.Errorf("Validate = %v, want EINVALID with %q", err, tt.wantErr)
			}
		})
	}
	for _, typ := range EventTypes {
		if _, ok := EventFields[typ]; !ok {
			t.Errorf("EventFields lacks type %s", typ)
		}
	}
}

func TestSpotNoticePaths(t *testing.T) {
	for _, tt := range []struct {
		action string
		want   string
	}{
		{SpotTerminate, "spot/instance-action spot/termination-time"},
		{SpotStop, "spot/instance-action"},
		{SpotHibernate, "spot/instance-action"},
	} {
		if got := strings.Join(SpotNotice{Action: tt.action}.Paths(), " "); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.action, got, tt.want)
		}
	}
}
