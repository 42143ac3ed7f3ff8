package ec2

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Token endpoint faults.
const (
	TokenRefuse  = "refuse"  // PUT /latest/api/token answers 403, as with IMDSv2 off
	TokenTimeout = "timeout" // the token request gets no answer; the connection is closed later
)

// Faults make the metadata service misbehave for an instance, so that
// clients' retries, fallbacks and timeouts can be tested. The zero value is
// no fault.
type Faults struct {
	// Latency is added to every response; with LatencyMax above it, the
	// delay is random between the two.
	Latency    time.Duration
	LatencyMax time.Duration
	// ErrorRate is the share of requests (0–1) answered with ErrorStatus.
	ErrorRate float64
	// ErrorStatus is 500 or 503 (the default).
	ErrorStatus int
	// RateLimit throttles the instance with 429 above this many requests a
	// second (Burst at once); 0 means no limit.
	RateLimit float64
	Burst     int
	// Token makes the token endpoint refuse or time out.
	Token string
	// ExpiredCredentials serves credentials whose Expiration has passed.
	ExpiredCredentials bool
	// DropRate is the share of requests (0–1) whose connection is closed
	// without a response.
	DropRate float64
}

// Active reports whether any fault is set.
func (f Faults) Active() bool { return f != Faults{} }

// Validate checks the values; the problems name the fault.
func (f Faults) Validate() error {
	var bad []string
	if f.Latency < 0 || f.LatencyMax < 0 || f.Latency > time.Minute || f.LatencyMax > time.Minute {
		bad = append(bad, "latency must be between 0 and 1m")
	}
	if f.LatencyMax != 0 && f.LatencyMax < f.Latency {
		bad = append(bad, "latency_max must not be below latency")
	}
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.DropRate < 0 || f.DropRate > 1 {
		bad = append(bad, "error_rate and drop_rate are shares between 0 and 1")
	}
	if f.ErrorStatus != 0 && f.ErrorStatus != 500 && f.ErrorStatus != 503 {
		bad = append(bad, fmt.Sprintf("error_status must be 500 or 503, got %d", f.ErrorStatus))
	}
	if f.RateLimit < 0 || f.Burst < 0 {
		bad = append(bad, "rate_limit and burst must not be negative")
	}
	if f.Token != "" && f.Token != TokenRefuse && f.Token != TokenTimeout {
		bad = append(bad, fmt.Sprintf("token must be refuse or timeout, got %q", f.Token))
	}
	if len(bad) > 0 {
		return Errorf(EINVALID, "%s", strings.Join(bad, "; "))
	}
	return nil
}

// String lists the active faults, for logs and tables.
func (f Faults) String() string {
	var p []string
	if f.Latency > 0 || f.LatencyMax > 0 {
		if f.LatencyMax > f.Latency {
			p = append(p, fmt.Sprintf("latency=%s-%s", f.Latency, f.LatencyMax))
		} else {
			p = append(p, "latency="+f.Latency.String())
		}
	}
	if f.ErrorRate > 0 {
		p = append(p, fmt.Sprintf("errors=%g×%d", f.ErrorRate, f.errorStatus()))
	}
	if f.RateLimit > 0 {
		p = append(p, fmt.Sprintf("rate-limit=%g/s", f.RateLimit))
		if f.Burst > 0 {
			p = append(p, fmt.Sprintf("burst=%d", f.Burst))
		}
	}
	if f.Token != "" {
		p = append(p, "token="+f.Token)
	}
	if f.ExpiredCredentials {
		p = append(p, "expired-credentials")
	}
	if f.DropRate > 0 {
		p = append(p, fmt.Sprintf("drop=%g", f.DropRate))
	}
	return strings.Join(p, ",")
}

func (f Faults) errorStatus() int {
	if f.ErrorStatus == 0 {
		return 503
	}
	return f.ErrorStatus
}

// ErrorCode is the application error code of an injected error response.
func (f Faults) ErrorCode() string {
	if f.errorStatus() == 500 {
		return EINTERNAL
	}
	return EUNAVAILABLE
}

// FaultService switches faults at run time.
type FaultService interface {
	// SetFaults replaces the faults of the named instance, or of every
	// instance when name is "" (instance faults then add to these). Returns
	// ENOTFOUND for an unknown instance and EINVALID for bad values.
	SetFaults(ctx context.Context, name string, f Faults) error
	// GetFaults returns the faults set for name ("" for every instance).
	GetFaults(ctx context.Context, name string) (Faults, error)
}

// ParseFaults reads the form String writes, e.g.
// "latency=100ms-1s,errors=0.2×500,rate-limit=10/s,burst=5,token=refuse,expired-credentials,drop=0.1".
// "errors=0.2" means 503. The empty string is no fault.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		var err error
		switch k {
		case "latency":
			lo, hi, rng := strings.Cut(v, "-")
			if f.Latency, err = time.ParseDuration(lo); err == nil && rng {
				f.LatencyMax, err = time.ParseDuration(hi)
			}
		case "errors":
			rate, status, hasStatus := strings.Cut(v, "×")
			if f.ErrorRate, err = strconv.ParseFloat(rate, 64); err == nil && hasStatus {
				f.ErrorStatus, err = strconv.Atoi(status)
			}
		case "rate-limit":
			f.RateLimit, err = strconv.ParseFloat(strings.TrimSuffix(v, "/s"), 64)
		case "burst":
			f.Burst, err = strconv.Atoi(v)
		case "token":
			f.Token = v
		case "expired-credentials":
			if v != "" {
				err = fmt.Errorf("takes no value")
			}
			f.ExpiredCredentials = true
		case "drop":
			f.DropRate, err = strconv.ParseFloat(v, 64)
		default:
			return Faults{}, Errorf(EINVALID, "unknown fault %q", k)
		}
		if err != nil {
			return Faults{}, Errorf(EINVALID, "fault %q: bad value %q", k, v)
		}
	}
	if f.Burst != 0 && f.RateLimit == 0 {
		return Faults{}, Errorf(EINVALID, "fault \"burst\" only applies with rate-limit")
	}
	if err := f.Validate(); err != nil {
		return Faults{}, err
	}
	return f, nil
}
