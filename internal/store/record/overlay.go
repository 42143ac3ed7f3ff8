package record

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// overlayVersion is the version of the overlay encoding written by this code.
const overlayVersion = 1

// overlayRecord is the stored form of an ec2.Overlay, under explicit names
// like record. Times are RFC 3339 with nanoseconds, durations nanoseconds.
type overlayRecord struct {
	Version       int                 `json:"version"`
	Spot          *spotRecord         `json:"spot,omitempty"`
	SpotScheduled *spotRecord         `json:"spot_scheduled,omitempty"`
	Rebalance     string              `json:"rebalance,omitempty"`
	Maintenance   []maintenanceRecord `json:"maintenance,omitempty"`
	Autoscaling   string              `json:"autoscaling_state,omitempty"`
	SpotLifeCycle bool                `json:"spot_life_cycle,omitempty"`
	Faults        faultsRecord        `json:"faults,omitzero"`
}

type spotRecord struct {
	Action string `json:"action"`
	Time   string `json:"time"`
	Notice string `json:"notice"`
}

type maintenanceRecord struct {
	ID          string `json:"id"`
	Code        string `json:"code"`
	Description string `json:"description,omitempty"`
	State       string `json:"state"`
	NotBefore   string `json:"not_before"`
	NotAfter    string `json:"not_after"`
}

type faultsRecord struct {
	LatencyNS          int64   `json:"latency_ns,omitempty"`
	LatencyMaxNS       int64   `json:"latency_max_ns,omitempty"`
	ErrorRate          float64 `json:"error_rate,omitempty"`
	ErrorStatus        int     `json:"error_status,omitempty"`
	RateLimit          float64 `json:"rate_limit,omitempty"`
	Burst              int     `json:"burst,omitempty"`
	Token              string  `json:"token,omitempty"`
	ExpiredCredentials bool    `json:"expired_credentials,omitempty"`
	DropRate           float64 `json:"drop_rate,omitempty"`
}

// MarshalOverlay encodes o as a version 1 overlay record.
func MarshalOverlay(o ec2.Overlay) ([]byte, error) {
	e := o.Events
	r := overlayRecord{
		Version: overlayVersion, Spot: spotToRecord(e.Spot), SpotScheduled: spotToRecord(e.SpotScheduled),
		Rebalance: formatTime(e.Rebalance), Autoscaling: o.AutoscalingState, SpotLifeCycle: o.Spot,
		Maintenance: mapSlice(e.Maintenance, func(m ec2.MaintenanceEvent) maintenanceRecord {
			return maintenanceRecord{ID: m.ID, Code: m.Code, Description: m.Description, State: m.State,
				NotBefore: formatTime(m.NotBefore), NotAfter: formatTime(m.NotAfter)}
		}),
		Faults: faultsRecord{
			LatencyNS: int64(o.Faults.Latency), LatencyMaxNS: int64(o.Faults.LatencyMax), ErrorRate: o.Faults.ErrorRate,
			ErrorStatus: o.Faults.ErrorStatus, RateLimit: o.Faults.RateLimit, Burst: o.Faults.Burst, Token: o.Faults.Token,
			ExpiredCredentials: o.Faults.ExpiredCredentials, DropRate: o.Faults.DropRate,
		},
	}
	return json.Marshal(r)
}

// UnmarshalOverlay decodes an overlay record. It refuses one of another
// version, a time that does not parse, and faults that ec2.Faults.Validate
// refuses, so that what the metadata path gets was valid when written.
func UnmarshalOverlay(v []byte) (ec2.Overlay, error) {
	var r overlayRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return ec2.Overlay{}, err
	}
	if r.Version != overlayVersion {
		return ec2.Overlay{}, fmt.Errorf("overlay record version %d is not supported (this imds reads version %d)", r.Version, overlayVersion)
	}
	var o ec2.Overlay
	var err error
	if o.Events.Spot, err = spotFromRecord("spot", r.Spot); err != nil {
		return ec2.Overlay{}, err
	}
	if o.Events.SpotScheduled, err = spotFromRecord("spot_scheduled", r.SpotScheduled); err != nil {
		return ec2.Overlay{}, err
	}
	if o.Events.Rebalance, err = parseTime("rebalance", r.Rebalance); err != nil {
		return ec2.Overlay{}, err
	}
	for i, m := range r.Maintenance {
		e := ec2.MaintenanceEvent{ID: m.ID, Code: m.Code, Description: m.Description, State: m.State}
		if e.NotBefore, err = parseTime(fmt.Sprintf("maintenance[%d].not_before", i), m.NotBefore); err != nil {
			return ec2.Overlay{}, err
		}
		if e.NotAfter, err = parseTime(fmt.Sprintf("maintenance[%d].not_after", i), m.NotAfter); err != nil {
			return ec2.Overlay{}, err
		}
		o.Events.Maintenance = append(o.Events.Maintenance, e)
	}
	o.AutoscalingState, o.Spot = r.Autoscaling, r.SpotLifeCycle
	f := r.Faults
	o.Faults = ec2.Faults{Latency: time.Duration(f.LatencyNS), LatencyMax: time.Duration(f.LatencyMaxNS), ErrorRate: f.ErrorRate,
		ErrorStatus: f.ErrorStatus, RateLimit: f.RateLimit, Burst: f.Burst, Token: f.Token,
		ExpiredCredentials: f.ExpiredCredentials, DropRate: f.DropRate}
	if err := o.Faults.Validate(); err != nil {
		return ec2.Overlay{}, fmt.Errorf("faults: %s", ec2.ErrorMessage(err))
	}
	return o, nil
}

func spotToRecord(n *ec2.SpotNotice) *spotRecord {
	if n == nil {
		return nil
	}
	return &spotRecord{Action: n.Action, Time: formatTime(n.Time), Notice: formatTime(n.Notice)}
}

func spotFromRecord(field string, r *spotRecord) (*ec2.SpotNotice, error) {
	if r == nil {
		return nil, nil
	}
	n := &ec2.SpotNotice{Action: r.Action}
	var err error
	if n.Time, err = parseTime(field+".time", r.Time); err != nil {
		return nil, err
	}
	if n.Notice, err = parseTime(field+".notice", r.Notice); err != nil {
		return nil, err
	}
	return n, nil
}

// formatTime writes t, "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// parseTime reads what formatTime wrote.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
}
