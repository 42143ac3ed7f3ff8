package imds

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// errNoResponse tells serveHTTP that a fault already dealt with the
// connection (closed it without a response).
var errNoResponse = errors.New("connection closed by a fault")

// tokenTimeoutHold is how long a token request is held before its
// connection is closed without an answer; clients give up far sooner.
const tokenTimeoutHold = 30 * time.Second

// injectFault applies the faults of an instance to one request before it is
// served. It returns an error for responses the fault replaces.
func (s *Server) injectFault(x exchange, req *request, f ec2.Faults, tokenPath bool) error {
	if f.DropRate > 0 && s.random() < f.DropRate {
		req.fault = "drop"
		return s.drop(x)
	}
	if f.Latency > 0 || f.LatencyMax > 0 {
		d := f.Latency
		if f.LatencyMax > f.Latency {
			d += time.Duration(s.random() * float64(f.LatencyMax-f.Latency))
		}
		req.fault = "latency"
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-x.gone():
			t.Stop()
			return errNoResponse
		}
	}
	if f.RateLimit > 0 && !s.allow(req.instance, f) {
		req.fault = "throttle"
		return ec2.Errorf(ec2.ETHROTTLED, "instance %s is over its request rate (fault)", req.instance)
	}
	if f.ErrorRate > 0 && s.random() < f.ErrorRate {
		req.fault = "error"
		return ec2.Errorf(f.ErrorCode(), "injected error (fault)")
	}
	if tokenPath && x.method() == http.MethodPut {
		switch f.Token {
		case ec2.TokenRefuse:
			req.fault = "token-refuse"
			return ec2.Errorf(ec2.EFORBIDDEN, "the token endpoint refuses (fault)")
		case ec2.TokenTimeout:
			req.fault = "token-timeout"
			t := time.NewTimer(tokenTimeoutHold)
			select {
			case <-t.C:
			case <-x.gone():
				t.Stop()
			}
			return s.drop(x)
		}
	}
	return nil
}

// drop closes the connection without writing a response.
func (s *Server) drop(x exchange) error {
	x.drop()
	return errNoResponse
}

func (s *Server) random() float64 {
	if s.Random != nil {
		return s.Random()
	}
	return rand.Float64() // math/rand/v2's generator is safe for concurrent use
}

// bucket is a token bucket per instance for the rate-limit fault.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// allow takes one token from the instance's bucket.
func (s *Server) allow(instance string, f ec2.Faults) bool {
	v, _ := s.buckets.LoadOrStore(instance, &bucket{})
	b := v.(*bucket)
	burst := float64(max(f.Burst, 1))
	now := s.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*f.RateLimit)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
