package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: starts a fake clock (internal/clock)

// scriptedSource returns numbered credentials valid for lifetime, or fails
// while failing is set. Each secret is derived from its key ID so that a torn
// read (key of one set, secret of another) is detectable.
type scriptedSource struct {
	clk      *clock.Fake
	lifetime time.Duration // 0: credentials that do not expire
	n        atomic.Int64
	failing  atomic.Pointer[error]
}

func (s *scriptedSource) Retrieve(context.Context) (ec2.Credentials, error) {
	if e := s.failing.Load(); e != nil {
		return ec2.Credentials{}, *e
	}
	n := s.n.Add(1)
	id := fmt.Sprintf("ASIATEST%012d", n)
	c := ec2.Credentials{AccessKeyID: id, SecretAccessKey: secretOf(id), SessionToken: "token-" + id}
	if s.lifetime != 0 {
		c.Expiration = s.clk.Now().Add(s.lifetime)
	}
	return c, nil
}

func (s *scriptedSource) fail(err error) { s.failing.Store(&err) }
func (s *scriptedSource) recover()       { s.failing.Store(nil) }
func (s *scriptedSource) String() string { return "scripted" }

func secretOf(id string) string { return "secret/" + id }

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type harness struct {
	clk *clock.Fake
	src *scriptedSource
	r   *Refresher
	log *syncLog
}

func start(t *testing.T, lifetime time.Duration, prepare func(*scriptedSource)) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	src := &scriptedSource{clk: clk, lifetime: lifetime}
	if prepare != nil {
		prepare(src)
	}
	log := &syncLog{}
	r := NewRefresher("web-role", src)
	r.Clock = clk
	r.Logger = slog.New(slog.NewTextHandler(log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	created := clk.TimerCreated()
	r.Start(ctx)
	waitTimer(t, created)
	t.Cleanup(func() { cancel(); r.Wait() })
	return &harness{clk: clk, src: src, r: r, log: log}
}

func waitTimer(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(time.Second):
		t.Fatal("the refresher did not schedule its next attempt")
	}
}

// advance moves the clock and waits until the loop has handled it (it
// always arms a new timer after an attempt).
func (h *harness) advance(t *testing.T, d time.Duration) {
	t.Helper()
	created := h.clk.TimerCreated()
	before := h.r.Fetches()
	h.clk.Advance(d)
	if h.r.Fetches() > before || h.clk.Pending() == 0 {
		waitTimer(t, created)
	}
}

func (h *harness) current(t *testing.T) ec2.Credentials {
	t.Helper()
	c, err := h.r.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return c
}

func TestRefreshesAheadOfExpiry(t *testing.T) {
	h := start(t, time.Hour, nil)
	first := h.current(t)
	if h.r.Fetches() != 1 || !first.Expiration.Equal(t0.Add(time.Hour)) || !first.LastUpdated.Equal(t0) {
		t.Fatalf("after Start: fetches=%d creds=%v", h.r.Fetches(), first)
	}
	h.advance(t, 44*time.Minute)
	if h.r.Fetches() != 1 {
		t.Errorf("refreshed at 44m of a 1h lifetime, want at 45m")
	}
	h.advance(t, time.Minute)
	second := h.current(t)
	if h.r.Fetches() != 2 || second.AccessKeyID == first.AccessKeyID {
		t.Errorf("not refreshed 15m before expiry: fetches=%d", h.r.Fetches())
	}
	if left := first.Expiration.Sub(h.clk.Now()); left < MinRefreshAhead {
		t.Errorf("new credentials only %v before the old expired", left)
	}
}

func TestShortLifetimeRefreshesAtLeastFiveMinutesAhead(t *testing.T) {
	h := start(t, 15*time.Minute, nil)
	h.advance(t, 9*time.Minute)
	if h.r.Fetches() != 1 {
		t.Fatalf("refreshed too early")
	}
	h.advance(t, time.Minute)
	if h.r.Fetches() != 2 {
		t.Errorf("15m credentials not refreshed 5m before expiry")
	}
}

func TestOutageKeepsServingThenRoleError(t *testing.T) {
	h := start(t, time.Hour, nil)
	good := h.current(t)
	h.src.fail(errors.New("connection refused"))
	h.advance(t, 45*time.Minute) // the scheduled refresh fails
	attempts := 1
	for h.clk.Now().Before(good.Expiration) {
		if c := h.current(t); c != good {
			t.Fatalf("served %v during the outage, want the last good %v", c, good)
		}
		h.advance(t, time.Minute)
		attempts++
	}
	_, err := h.r.Current()
	var re *ec2.RoleError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "connection refused") {
		t.Fatalf("after expiry: err=%v, want a RoleError with the reason", err)
	}
	if got := strings.Count(h.log.String(), "credential refresh failed"); got < 10 || int64(got) != h.r.Fetches()-1 {
		t.Errorf("%d failure log lines for %d failed attempts", got, h.r.Fetches()-1)
	}
	if strings.Contains(h.log.String(), good.SecretAccessKey) || strings.Contains(h.log.String(), good.SessionToken) {
		t.Errorf("the log contains a secret:\n%s", h.log.String())
	}
	st := h.r.Status()
	if st.Valid || st.Failures != h.r.Fetches()-1 || st.Refreshes != 1 || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("Status during the outage = %+v", st)
	}
	h.src.recover()
	h.advance(t, DefaultMaxBackoff)
	if c := h.current(t); c.AccessKeyID == good.AccessKeyID {
		t.Errorf("still no new credentials after the source recovered")
	}
	if st := h.r.Status(); !st.Valid || st.Refreshes != 2 || st.LastError != "" {
		t.Errorf("Status after recovery = %+v", st)
	}
}

func TestBackoffGrows(t *testing.T) {
	h := start(t, time.Hour, func(s *scriptedSource) { s.fail(errors.New("boom")) })
	if _, err := h.r.Current(); err == nil {
		t.Fatal("credentials served although the first fetch failed")
	}
	var waits []time.Duration
	for i := 0; i < 12; i++ {
		before := h.r.Fetches()
		start := h.clk.Now()
		for h.r.Fetches() == before {
			h.advance(t, time.Second)
		}
		waits = append(waits, h.clk.Now().Sub(start))
	}
	if waits[0] != time.Second || waits[3] < 8*time.Second || waits[len(waits)-1] != DefaultMaxBackoff {
		t.Errorf("backoff waits %v, want 1s doubling up to %v", waits, DefaultMaxBackoff)
	}
}

func TestRoleErrorPassesThrough(t *testing.T) {
	denied := &ec2.RoleError{EC2Code: "AssumeRoleUnauthorizedAccess", Message: "EC2 cannot assume the role"}
	h := start(t, time.Hour, func(s *scriptedSource) { s.fail(denied) })
	_, err := h.r.Current()
	var re *ec2.RoleError
	if !errors.As(err, &re) || re.EC2Code != "AssumeRoleUnauthorizedAccess" {
		t.Errorf("err=%v, want the source's RoleError", err)
	}
}

func TestStaticCredentialsGetRollingExpiration(t *testing.T) {
	h := start(t, 0, nil)
	first := h.current(t)
	if !first.Expiration.Equal(t0.Add(DefaultStaticLifetime)) {
		t.Errorf("Expiration=%v, want start + %v", first.Expiration, DefaultStaticLifetime)
	}
	h.advance(t, DefaultRotateAfter)
	second := h.current(t)
	if !second.Expiration.Equal(h.clk.Now().Add(DefaultStaticLifetime)) || !second.LastUpdated.Equal(h.clk.Now()) {
		t.Errorf("after %v: %v, want Expiration and LastUpdated to roll forward", DefaultRotateAfter, second)
	}
}

func TestRotate(t *testing.T) {
	h := start(t, time.Hour, nil)
	first := h.current(t)
	created := h.clk.TimerCreated()
	h.r.Rotate()
	waitTimer(t, created)
	if c := h.current(t); c.AccessKeyID == first.AccessKeyID {
		t.Errorf("Rotate did not fetch new credentials")
	}
}

func TestExpiredFromSourceIsAnError(t *testing.T) {
	h := start(t, time.Hour, nil)
	h.src.lifetime = -time.Minute
	created := h.clk.TimerCreated()
	h.r.Rotate()
	waitTimer(t, created)
	if !strings.Contains(h.log.String(), "expired at") {
		t.Errorf("expired credentials from the source were not reported:\n%s", h.log.String())
	}
	if c := h.current(t); c.Expiration.Before(h.clk.Now()) {
		t.Errorf("serving expired credentials %v", c)
	}
}

// TestNoTornReads hammers Current while rotations happen: every set read is
// complete and consistent.
func TestNoTornReads(t *testing.T) {
	h := start(t, time.Hour, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad, reads atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := h.r.Current()
				reads.Add(1)
				if err != nil || c.SecretAccessKey != secretOf(c.AccessKeyID) || c.SessionToken != "token-"+c.AccessKeyID {
					bad.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		created := h.clk.TimerCreated()
		h.r.Rotate()
		waitTimer(t, created)
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || h.r.Fetches() < 200 {
		t.Errorf("%d torn or failed reads of %d; %d fetches", bad.Load(), reads.Load(), h.r.Fetches())
	}
}
