package creds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// Defaults of a Refresher.
const (
	DefaultRotateAfter    = time.Hour
	DefaultStaticLifetime = 6 * time.Hour
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultFetchTimeout   = time.Minute
	DefaultStartTimeout   = 15 * time.Second
	// MinRefreshAhead is how long before expiry new credentials must be in
	// place at the latest, as EC2 promises.
	MinRefreshAhead = 5 * time.Minute
	// MaxRefreshAhead matches botocore's advisory refresh window, so clients
	// that refresh early already find the new credentials.
	MaxRefreshAhead = 15 * time.Minute
)

// Refresher keeps one role's credentials fresh from its source. Set the
// fields, then call Start; Current is safe for concurrent use and lock-free.
type Refresher struct {
	Role   string
	Source ec2.CredentialSource
	// Kind names the kind of source (static, aws, process) for Status.
	Kind   string
	Clock  clock.Clock
	Logger *slog.Logger

	// RotateAfter bounds how long one set is served before a refresh.
	RotateAfter time.Duration
	// StaticLifetime is the rolling Expiration given to credentials that do
	// not expire (static keys), so clients still see EC2's shape.
	StaticLifetime time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed attempts.
	MinBackoff, MaxBackoff time.Duration
	// FetchTimeout bounds one call of Source.Retrieve.
	FetchTimeout time.Duration
	// StartTimeout bounds the first fetch, which start-up waits for: a slow
	// source delays serving by at most this, then keeps trying in the background.
	StartTimeout time.Duration

	cur      atomic.Pointer[snapshot]
	kick     chan struct{}
	fetches  atomic.Int64
	failures atomic.Int64
	done     chan struct{}
}

// snapshot is what requests read: the last good credentials and, if the
// last attempt failed, why.
type snapshot struct {
	creds   ec2.Credentials
	valid   bool
	lastErr error
}

// NewRefresher returns a Refresher with the defaults set.
func NewRefresher(role string, src ec2.CredentialSource) *Refresher {
	return &Refresher{
		Role: role, Source: src, Clock: clock.Real{}, Logger: slog.New(slog.DiscardHandler),
		RotateAfter: DefaultRotateAfter, StaticLifetime: DefaultStaticLifetime,
		MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff, FetchTimeout: DefaultFetchTimeout,
		StartTimeout: DefaultStartTimeout,
	}
}

// Start fetches the credentials once (waiting at most StartTimeout) and then
// keeps them fresh in the background until ctx is done. A failed first fetch
// does not stop Start: requests get EC2's role error until a retry succeeds.
func (r *Refresher) Start(ctx context.Context) {
	r.kick = make(chan struct{}, 1)
	r.done = make(chan struct{})
	wait := r.refresh(ctx, 0, min(r.StartTimeout, r.FetchTimeout))
	go r.loop(ctx, wait)
}

// Wait blocks until the background loop has stopped (after ctx is done).
func (r *Refresher) Wait() { <-r.done }

// Rotate asks for new credentials now, whatever the age of the current ones.
func (r *Refresher) Rotate() {
	select {
	case r.kick <- struct{}{}:
	default: // a rotation is already pending
	}
}

// Fetches returns how many times the source has been called.
func (r *Refresher) Fetches() int64 { return r.fetches.Load() }

// Status is the state of the role's credentials, without the secrets.
func (r *Refresher) Status() ec2.RoleStatus {
	st := ec2.RoleStatus{Role: r.Role, Kind: r.Kind, Source: fmt.Sprint(r.Source), Failures: r.failures.Load()}
	st.Refreshes = r.fetches.Load() - st.Failures
	s := r.cur.Load()
	if s == nil {
		return st
	}
	if s.valid {
		st.LastUpdated, st.Expiration, st.Sets = s.creds.LastUpdated, s.creds.Expiration, 1
		st.Valid = r.Clock.Now().Before(s.creds.Expiration)
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	return st
}

// Current returns the credentials to serve now, or a *ec2.RoleError when no
// valid credentials are left.
func (r *Refresher) Current() (ec2.Credentials, error) {
	s := r.cur.Load()
	if s != nil && s.valid && r.Clock.Now().Before(s.creds.Expiration) {
		return s.creds, nil
	}
	var re *ec2.RoleError
	if s != nil && errors.As(s.lastErr, &re) {
		return ec2.Credentials{}, re
	}
	msg := "no valid credentials are available for role " + r.Role
	if s != nil && s.lastErr != nil {
		msg += ": " + s.lastErr.Error()
	}
	return ec2.Credentials{}, &ec2.RoleError{EC2Code: "InternalError", Message: msg}
}

func (r *Refresher) loop(ctx context.Context, wait time.Duration) {
	defer close(r.done)
	failures := 0
	if s := r.cur.Load(); s == nil || s.lastErr != nil {
		failures = 1
	}
	for {
		t := r.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-r.kick:
			t.Stop()
			failures = 0
		}
		wait = r.refresh(ctx, failures, r.FetchTimeout)
		if s := r.cur.Load(); s.lastErr != nil {
			failures++
		} else {
			failures = 0
		}
	}
}

// refresh fetches once and returns how long to wait before the next attempt.
// failures is the number of consecutive failed attempts before this one.
func (r *Refresher) refresh(ctx context.Context, failures int, timeout time.Duration) time.Duration {
	r.fetches.Add(1)
	fctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := r.Source.Retrieve(fctx)
	cancel()
	now := r.Clock.Now()
	if err == nil {
		err = r.normalise(&c, now)
	}
	prev := r.cur.Load()
	if err != nil {
		r.failures.Add(1)
		next := &snapshot{lastErr: err}
		if prev != nil && prev.valid && now.Before(prev.creds.Expiration) {
			next.creds, next.valid = prev.creds, true
		}
		r.cur.Store(next)
		backoff := r.backoff(failures)
		if next.valid {
			// Never sleep past the point where the old credentials run out.
			backoff = min(backoff, max(prev.creds.Expiration.Sub(now)-MinRefreshAhead, r.MinBackoff))
		}
		r.Logger.Warn("credential refresh failed", "role", r.Role, "source", fmt.Sprint(r.Source),
			"err", err, "attempt", failures+1, "retry_in", backoff, "serving_previous", next.valid)
		return backoff
	}
	r.cur.Store(&snapshot{creds: c, valid: true})
	r.Logger.Info("credentials refreshed", "role", r.Role, "source", fmt.Sprint(r.Source),
		"access_key_id", maskKey(c.AccessKeyID), "expiration", c.Expiration.Format(time.RFC3339))
	return r.nextRefresh(c, now)
}

// normalise fills LastUpdated and a rolling Expiration for credentials that
// do not expire, and refuses sets that are already expired.
func (r *Refresher) normalise(c *ec2.Credentials, now time.Time) error {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return errors.New("source returned credentials without an access key ID or secret")
	}
	c.LastUpdated = now.UTC().Truncate(time.Second)
	if c.Expiration.IsZero() {
		c.Expiration = c.LastUpdated.Add(r.StaticLifetime)
	}
	c.Expiration = c.Expiration.UTC().Truncate(time.Second)
	if !c.Expiration.After(now) {
		return fmt.Errorf("source returned credentials that expired at %s", c.Expiration.Format(time.RFC3339))
	}
	return nil
}

// nextRefresh is when new credentials are due: after RotateAfter, and in any
// case a quarter of their lifetime (5 to 15 minutes) before they expire.
func (r *Refresher) nextRefresh(c ec2.Credentials, now time.Time) time.Duration {
	life := c.Expiration.Sub(c.LastUpdated)
	ahead := min(max(life/4, MinRefreshAhead), MaxRefreshAhead)
	at := c.Expiration.Add(-ahead)
	if r.RotateAfter > 0 {
		if rot := c.LastUpdated.Add(r.RotateAfter); rot.Before(at) {
			at = rot
		}
	}
	return max(at.Sub(now), r.MinBackoff)
}

func (r *Refresher) backoff(failures int) time.Duration {
	d := r.MinBackoff
	for i := 0; i < failures && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxBackoff)
}

// maskKey keeps an access key ID recognisable in logs without printing it whole.
func maskKey(id string) string {
	if len(id) <= 8 {
		return id
	}
	return id[:4] + "…" + id[len(id)-4:]
}
