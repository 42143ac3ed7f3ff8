package fake

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Defaults chosen to mirror EC2: credentials live six hours and are replaced
// hourly, so Expiration is always at least five hours away.
const (
	DefaultLifetime    = 6 * time.Hour
	DefaultRotateAfter = time.Hour
)

// Provider hands out fake credentials per instance and role. Reads are
// lock-free; only a rotation takes the lock of its own entry.
type Provider struct {
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Lifetime is how long a set stays valid after it was put in place.
	Lifetime time.Duration
	// RotateAfter is how long a set is served before the next replaces it.
	RotateAfter time.Duration

	rand      io.Reader
	entries   sync.Map // key → *entry
	generated sync.Map // role → *atomic.Int64: sets generated, for RoleStatus
}

var _ ec2.CredentialProvider = (*Provider)(nil)

type entry struct {
	mu  sync.Mutex
	cur atomic.Pointer[ec2.Credentials]
}

// New returns a Provider drawing key material from rand (crypto/rand.Reader in
// production).
func New(rand io.Reader) *Provider {
	return &Provider{Now: time.Now, Lifetime: DefaultLifetime, RotateAfter: DefaultRotateAfter, rand: rand}
}

// Credentials implements ec2.CredentialProvider for the role of inst.
func (p *Provider) Credentials(_ context.Context, inst *ec2.Instance, role string) (ec2.Credentials, error) {
	if inst.Role == nil || inst.Role.Name != role {
		return ec2.Credentials{}, ec2.Errorf(ec2.ENOTFOUND, "instance %s has no role %q", inst.Name, role)
	}
	return p.Get(inst.ID + "/" + role)
}

// Get returns the current credentials for key, generating or rotating them
// when due. Keys are opaque: one per instance and role.
func (p *Provider) Get(key string) (ec2.Credentials, error) {
	now := p.Now()
	v, _ := p.entries.Load(key)
	if v == nil {
		v, _ = p.entries.LoadOrStore(key, &entry{})
	}
	e := v.(*entry)
	if c := e.cur.Load(); c != nil && now.Before(c.LastUpdated.Add(p.RotateAfter)) {
		return *c, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.cur.Load(); c != nil && now.Before(c.LastUpdated.Add(p.RotateAfter)) {
		return *c, nil
	}
	c, err := p.generate(now)
	if err != nil {
		return ec2.Credentials{}, ec2.Errorf(ec2.EUNAVAILABLE, "could not generate credentials")
	}
	e.cur.Store(&c)
	p.count(key)
	return c, nil
}

// Rotate replaces the credentials for key now, whatever their age.
func (p *Provider) Rotate(key string) error {
	v, _ := p.entries.LoadOrStore(key, &entry{})
	e := v.(*entry)
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := p.generate(p.Now())
	if err != nil {
		return err
	}
	e.cur.Store(&c)
	p.count(key)
	return nil
}

// sessionTokenPrefix is what every real STS session token starts with once
// decoded ("IQoJb3JpZ2luX2Vj" in base64), so tools that sniff tokens accept ours.
const sessionTokenPrefix = "!\n\torigin_ec"

func (p *Provider) generate(now time.Time) (ec2.Credentials, error) {
	now = now.UTC().Truncate(time.Second)
	buf := make([]byte, 16+30+len(sessionTokenPrefix)+720)
	if _, err := io.ReadFull(p.rand, buf); err != nil {
		return ec2.Credentials{}, fmt.Errorf("fake credentials: %w", err)
	}
	const base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	id := make([]byte, 0, 20)
	id = append(id, "ASIA"...)
	for _, b := range buf[:16] {
		id = append(id, base32[b&31])
	}
	secret := base64.StdEncoding.EncodeToString(buf[16:46]) // 30 bytes → 40 characters
	tok := buf[46:]
	copy(tok, sessionTokenPrefix)
	return ec2.Credentials{
		AccessKeyID:     string(id),
		SecretAccessKey: secret,
		SessionToken:    base64.StdEncoding.EncodeToString(tok),
		LastUpdated:     now,
		Expiration:      now.Add(p.Lifetime),
	}, nil
}

// IdentityCredentials implements ec2.IdentityCredentialProvider: the
// ec2-instance identity credentials are always fake and belong to the instance.
func (p *Provider) IdentityCredentials(_ context.Context, inst *ec2.Instance) (ec2.Credentials, error) {
	return p.Get(inst.ID + "#ec2-instance")
}

// RotateRole replaces now the credentials of role for every instance that
// has them (all roles when role is empty) and returns how many it replaced.
func (p *Provider) RotateRole(role string) int {
	n := 0
	p.entries.Range(func(k, _ any) bool {
		key := k.(string)
		if i := strings.LastIndexByte(key, '/'); i >= 0 && (role == "" || key[i+1:] == role) {
			if p.Rotate(key) == nil {
				n++
			}
		}
		return true
	})
	return n
}

// roleOf is the role of an entry key ("instance-id/role"); "" for the
// instance identity's keys.
func roleOf(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[i+1:]
	}
	return ""
}

func (p *Provider) count(key string) {
	role := roleOf(key)
	if role == "" {
		return
	}
	v, ok := p.generated.Load(role)
	if !ok {
		v, _ = p.generated.LoadOrStore(role, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// RoleStatus returns, for every role credentials were generated for, the
// newest set's LastUpdated and Expiration and how many instances hold a set
// (implements creds.StatusReporter). The newest, because sets are replaced
// when asked for: an instance that stopped asking keeps an old set that
// nobody is served.
func (p *Provider) RoleStatus() []ec2.RoleStatus {
	now := p.Now()
	byRole := map[string]*ec2.RoleStatus{}
	p.entries.Range(func(k, v any) bool {
		role := roleOf(k.(string))
		c := v.(*entry).cur.Load()
		if role == "" || c == nil {
			return true
		}
		st := byRole[role]
		if st == nil {
			st = &ec2.RoleStatus{Role: role, Kind: "fake", Source: "fake", LastUpdated: c.LastUpdated, Expiration: c.Expiration}
			byRole[role] = st
		}
		st.Sets++
		if c.LastUpdated.After(st.LastUpdated) {
			st.LastUpdated, st.Expiration = c.LastUpdated, c.Expiration
		}
		return true
	})
	out := make([]ec2.RoleStatus, 0, len(byRole))
	for role, st := range byRole {
		st.Valid = now.Before(st.Expiration)
		if v, ok := p.generated.Load(role); ok {
			st.Refreshes = v.(*atomic.Int64).Load()
		}
		out = append(out, *st)
	}
	return out
}
