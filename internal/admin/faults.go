package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Fault routes:
//
//	PUT    /v1/instances/{name}/faults  body: FAULTS; 200 FAULTS, as set
//	GET    /v1/instances/{name}/faults  FAULTS
//	DELETE /v1/instances/{name}/faults  204, no fault left
//	PUT    /v1/faults                   the same for every instance
//	GET    /v1/faults
//	DELETE /v1/faults
//
// FAULTS is {"latency": "200ms", "latency_max": "1s", "error_rate": 0.2,
// "error_status": 503, "rate_limit": 10, "burst": 5, "token": "refuse",
// "expired_credentials": true, "drop_rate": 0.1}: every field is optional,
// a field left out is no fault, and the response leaves out the zero values
// ({} when none). PUT replaces the faults with exactly the body's.

// faultsBody is the faults document of the admin API: durations are Go
// duration strings, zero values are left out.
type faultsBody struct {
	Latency            string  `json:"latency,omitempty"`
	LatencyMax         string  `json:"latency_max,omitempty"`
	ErrorRate          float64 `json:"error_rate,omitempty"`
	ErrorStatus        int     `json:"error_status,omitempty"`
	RateLimit          float64 `json:"rate_limit,omitempty"`
	Burst              int     `json:"burst,omitempty"`
	Token              string  `json:"token,omitempty"`
	ExpiredCredentials bool    `json:"expired_credentials,omitempty"`
	DropRate           float64 `json:"drop_rate,omitempty"`
}

// faultFields are the fields of the faults document, in its order, with
// what a JSON value of each must be.
var faultFields = []struct{ name, kind string }{
	{"latency", "a duration string like 200ms"},
	{"latency_max", "a duration string like 1s"},
	{"error_rate", "a number between 0 and 1"},
	{"error_status", "the integer 500 or 503"},
	{"rate_limit", "a number of requests a second"},
	{"burst", "a whole number of requests"},
	{"token", `the string "refuse" or "timeout"`},
	{"expired_credentials", "true or false"},
	{"drop_rate", "a number between 0 and 1"},
}

func faultFieldNames() []string {
	names := make([]string, len(faultFields))
	for i, f := range faultFields {
		names[i] = f.name
	}
	return names
}

// MarshalFaults renders faults as the admin API does, followed by a newline:
// {} when there are none.
func MarshalFaults(f ec2.Faults) ([]byte, error) {
	return encodeJSON(faultsDocument(f))
}

func faultsDocument(f ec2.Faults) faultsBody {
	body := faultsBody{ErrorRate: f.ErrorRate, ErrorStatus: f.ErrorStatus, RateLimit: f.RateLimit, Burst: f.Burst,
		Token: f.Token, ExpiredCredentials: f.ExpiredCredentials, DropRate: f.DropRate}
	if f.Latency != 0 {
		body.Latency = f.Latency.String()
	}
	if f.LatencyMax != 0 {
		body.LatencyMax = f.LatencyMax.String()
	}
	return body
}

// faults converts the document; only the durations can fail, and their
// errors name the field.
func (b *faultsBody) faults() (ec2.Faults, error) {
	f := ec2.Faults{ErrorRate: b.ErrorRate, ErrorStatus: b.ErrorStatus, RateLimit: b.RateLimit, Burst: b.Burst,
		Token: b.Token, ExpiredCredentials: b.ExpiredCredentials, DropRate: b.DropRate}
	var err error
	if f.Latency, err = parseFaultDuration("latency", b.Latency); err != nil {
		return f, err
	}
	if f.LatencyMax, err = parseFaultDuration("latency_max", b.LatencyMax); err != nil {
		return f, err
	}
	return f, nil
}

func parseFaultDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ec2.Errorf(ec2.EINVALID, "%s: must be a duration like 200ms or 1s, got %q", field, s)
	}
	return d, nil
}

// faultsName is the instance of a fault route: "" on /v1/faults, for every
// instance.
func faultsName(r *http.Request) string { return r.PathValue("name") }

func (s *Server) faultService() (ec2.FaultService, error) {
	if s.Faults == nil {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server cannot inject faults")
	}
	return s.Faults, nil
}

// handleFaultsSet replaces the faults of the named instance, or of every
// instance, and answers with them.
func (s *Server) handleFaultsSet(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.faultService()
	if err != nil {
		return err
	}
	f, err := readFaults(r)
	if err != nil {
		return err
	}
	if err := f.Validate(); err != nil {
		return err
	}
	if err := svc.SetFaults(r.Context(), faultsName(r), f); err != nil {
		return err
	}
	return writeFaults(w, f)
}

// handleFaultsGet answers with the faults of the named instance, or of every
// instance.
func (s *Server) handleFaultsGet(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.faultService()
	if err != nil {
		return err
	}
	f, err := svc.GetFaults(r.Context(), faultsName(r))
	if err != nil {
		return err
	}
	return writeFaults(w, f)
}

// handleFaultsClear turns every fault of the named instance, or of every
// instance, off.
func (s *Server) handleFaultsClear(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.faultService()
	if err != nil {
		return err
	}
	if err := svc.SetFaults(r.Context(), faultsName(r), ec2.Faults{}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func writeFaults(w http.ResponseWriter, f ec2.Faults) error {
	body, err := MarshalFaults(f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// readFaults decodes the body of a PUT; every error names the field at
// fault. The values are not checked: that is Faults.Validate.
func readFaults(r *http.Request) (ec2.Faults, error) {
	data, err := readBody(r, jsonBody)
	if err != nil {
		return ec2.Faults{}, err
	}
	body, err := decodeFaultsBody(data)
	if err != nil {
		return ec2.Faults{}, err
	}
	return body.faults()
}

// decodeFaultsBody decodes one JSON object strictly.
func decodeFaultsBody(data []byte) (*faultsBody, error) {
	var body faultsBody
	err := strictJSON{
		empty: `the body must be a JSON object like {"latency": "200ms"}, or {} for no fault`,
		kind: func(field string) string {
			for _, f := range faultFields {
				if f.name == field {
					return f.kind
				}
			}
			return "another JSON type"
		},
		fields: strings.Join(faultFieldNames(), ", "),
	}.decode(data, &body)
	if err != nil {
		return nil, err
	}
	return &body, nil
}

// faultsPath is the path of the faults of the named instance, or of every
// instance when name is "".
func faultsPath(name string) string {
	if name == "" {
		return "/v1/faults"
	}
	return "/v1/instances/" + url.PathEscape(name) + "/faults"
}

// SetFaults implements ec2.FaultService over the admin API; name "" sets the
// faults of every instance.
func (c *Client) SetFaults(ctx context.Context, name string, f ec2.Faults) error {
	data, err := json.Marshal(faultsDocument(f))
	if err != nil {
		return fmt.Errorf("admin API: encode faults: %w", err)
	}
	return c.do(ctx, http.MethodPut, faultsPath(name), "application/json", data, nil)
}

// GetFaults implements ec2.FaultService over the admin API; name "" gets the
// faults of every instance.
func (c *Client) GetFaults(ctx context.Context, name string) (ec2.Faults, error) {
	var body faultsBody
	if err := c.do(ctx, http.MethodGet, faultsPath(name), "", nil, &body); err != nil {
		return ec2.Faults{}, err
	}
	f, err := body.faults()
	if err != nil {
		return ec2.Faults{}, fmt.Errorf("admin API GET %s: bad response: %w", faultsPath(name), err)
	}
	return f, nil
}

// ClearFaults turns every fault of the named instance off, or of every
// instance when name is "" (DELETE, the same as SetFaults with no fault).
func (c *Client) ClearFaults(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, faultsPath(name), "", nil, nil)
}

var _ ec2.FaultService = (*Client)(nil)
