package fake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

func newProvider() (*Provider, *time.Time) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: the provider's injected clock only
	p := New(rand.Reader)
	p.Now = func() time.Time { return now }
	return p, &now
}

func TestShapes(t *testing.T) {
	p, _ := newProvider()
	c, err := p.Get("i-1/role")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`).MatchString(c.AccessKeyID) {
		t.Errorf("AccessKeyID=%q, want ASIA + 16 base32 characters", c.AccessKeyID)
	}
	if len(c.SecretAccessKey) != 40 {
		t.Errorf("len(SecretAccessKey)=%d, want 40", len(c.SecretAccessKey))
	}
	if !strings.HasPrefix(c.SessionToken, "IQoJb3JpZ2luX2Vj") || len(c.SessionToken) < 900 {
		t.Errorf("SessionToken %.20q… (len %d) does not look like an STS token", c.SessionToken, len(c.SessionToken))
	}
	if _, err := base64.StdEncoding.DecodeString(c.SessionToken); err != nil {
		t.Errorf("SessionToken is not base64: %v", err)
	}
	if got := c.Expiration.Sub(c.LastUpdated); got != DefaultLifetime {
		t.Errorf("lifetime=%v, want %v", got, DefaultLifetime)
	}
}

func TestRotation(t *testing.T) {
	p, now := newProvider()
	first, _ := p.Get("k")
	*now = now.Add(DefaultRotateAfter - time.Second)
	if c, _ := p.Get("k"); c != first {
		t.Errorf("rotated before RotateAfter")
	}
	*now = now.Add(time.Second)
	second, _ := p.Get("k")
	if second.AccessKeyID == first.AccessKeyID || !second.LastUpdated.Equal(*now) {
		t.Errorf("not rotated at RotateAfter: %v then %v", first, second)
	}
	if left := first.Expiration.Sub(*now); left < 5*time.Minute {
		t.Errorf("new credentials arrived only %v before the old expired", left)
	}
	if err := p.Rotate("k"); err != nil {
		t.Fatal(err)
	}
	if third, _ := p.Get("k"); third.AccessKeyID == second.AccessKeyID {
		t.Errorf("Rotate did not replace the credentials")
	}
	if other, _ := p.Get("other"); other.AccessKeyID == second.AccessKeyID {
		t.Errorf("two keys share credentials")
	}
}

func TestCredentialsForRole(t *testing.T) {
	p, _ := newProvider()
	inst := &ec2.Instance{Name: "a", ID: "i-1", Role: &ec2.Role{Name: "r"}}
	if _, err := p.Credentials(context.Background(), inst, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Credentials(context.Background(), inst, "other"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("unknown role: code=%q, want %q", ec2.ErrorCode(err), ec2.ENOTFOUND)
	}
	role, _ := p.Credentials(context.Background(), inst, "r")
	id, _ := p.IdentityCredentials(context.Background(), inst)
	if role.AccessKeyID == id.AccessKeyID {
		t.Errorf("identity credentials equal the role's")
	}
}

// TestConcurrentRotation checks that many readers at the moment of rotation
// all see one consistent set.
func TestConcurrentRotation(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: the provider's injected clock only
	p := New(rand.Reader)
	p.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p.Get("k")
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	var wg sync.WaitGroup
	seen := sync.Map{}
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := p.Get("k")
			seen.Store(c.AccessKeyID, true)
		}()
	}
	wg.Wait()
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d different credentials after one rotation, want 1", n)
	}
}

func TestRoleStatus(t *testing.T) {
	p, now := newProvider()
	p.Get("i-1/web")
	*now = now.Add(time.Minute)
	newest, _ := p.Get("i-2/web")
	p.Get("i-1/db")
	p.Get("i-1#ec2-instance") // the identity's: not a role
	p.Rotate("i-1/db")
	got := map[string]ec2.RoleStatus{}
	for _, st := range p.RoleStatus() {
		got[st.Role] = st
	}
	if len(got) != 2 {
		t.Fatalf("RoleStatus = %v, want web and db", got)
	}
	web := got["web"]
	if !web.Valid || web.Sets != 2 || web.Refreshes != 2 || web.Kind != "fake" ||
		!web.LastUpdated.Equal(newest.LastUpdated) || !web.Expiration.Equal(newest.Expiration) {
		t.Errorf("web: %+v, want the newest of 2 sets", web)
	}
	if db := got["db"]; db.Sets != 1 || db.Refreshes != 2 {
		t.Errorf("db: %+v, want 1 set generated twice", db)
	}
	*now = now.Add(DefaultLifetime + time.Minute)
	for _, st := range p.RoleStatus() {
		if st.Valid {
			t.Errorf("%s valid after its lifetime", st.Role)
		}
	}
}
