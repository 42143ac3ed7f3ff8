package creds

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/imdsdev/imds/internal/ec2"
)

// Roles answers credential requests for every role: from its Refresher when
// the role has a source, otherwise from Fallback (the fake provider). The
// set of refreshers can be replaced while serving (Replace).
type Roles struct {
	Fallback ec2.CredentialProvider

	// set is read lock-free by requests; mu serialises Start, Replace and
	// Wait, which change it and the running refreshers.
	set     atomic.Pointer[map[string]*Refresher]
	mu      sync.Mutex
	parent  context.Context // Start's; refreshers added later run under it
	running map[*Refresher]context.CancelFunc
}

var _ ec2.CredentialProvider = (*Roles)(nil)

// NewRoles returns Roles for the given refreshers, keyed by role name.
func NewRoles(fallback ec2.CredentialProvider, refreshers ...*Refresher) *Roles {
	m := &Roles{Fallback: fallback, running: map[*Refresher]context.CancelFunc{}}
	m.set.Store(byRole(refreshers))
	return m
}

func byRole(refreshers []*Refresher) *map[string]*Refresher {
	set := make(map[string]*Refresher, len(refreshers))
	for _, r := range refreshers {
		set[r.Role] = r
	}
	return &set
}

func (m *Roles) refreshers() map[string]*Refresher { return *m.set.Load() }

// Refresher returns the refresher of role, or nil when the role has none.
func (m *Roles) Refresher(role string) *Refresher { return m.refreshers()[role] }

// Credentials implements ec2.CredentialProvider.
func (m *Roles) Credentials(ctx context.Context, inst *ec2.Instance, role string) (ec2.Credentials, error) {
	if inst.Role == nil || inst.Role.Name != role {
		return ec2.Credentials{}, ec2.Errorf(ec2.ENOTFOUND, "instance %s has no role %q", inst.Name, role)
	}
	if r := m.refreshers()[role]; r != nil {
		return r.Current()
	}
	return m.Fallback.Credentials(ctx, inst, role)
}

// Start starts every refresher, fetching their first credentials in
// parallel. Refreshers added by Replace later run until ctx is done too.
func (m *Roles) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parent = ctx
	m.startLocked(values(m.refreshers()))
}

// startLocked starts refreshers in parallel and returns once each has
// made its first fetch.
func (m *Roles) startLocked(rs []*Refresher) {
	var wg sync.WaitGroup
	for _, r := range rs {
		ctx, cancel := context.WithCancel(m.parent)
		m.running[r] = cancel
		wg.Add(1)
		go func() { defer wg.Done(); r.Start(ctx) }()
	}
	wg.Wait()
}

// Replace makes next the refreshers of the roles: those of next already
// serving keep running; new ones are started (their first fetch done);
// then, when commit (if not nil) succeeds, next is put in service and
// those no longer in it are stopped. When commit fails, the new ones are
// stopped and nothing changes: commit is where the caller applies what
// goes with the roles (the instances that use them). Before Start, Replace
// only records next.
func (m *Roles) Replace(next []*Refresher, commit func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parent == nil {
		if commit != nil {
			if err := commit(); err != nil {
				return err
			}
		}
		m.set.Store(byRole(next))
		return nil
	}
	old := m.refreshers()
	var fresh []*Refresher
	for _, r := range next {
		if _, ok := m.running[r]; !ok {
			fresh = append(fresh, r)
		}
	}
	m.startLocked(fresh)
	if commit != nil {
		if err := commit(); err != nil {
			m.stopLocked(fresh)
			return err
		}
	}
	m.set.Store(byRole(next))
	var gone []*Refresher
	for _, r := range old {
		if !slices.Contains(next, r) {
			gone = append(gone, r)
		}
	}
	m.stopLocked(gone)
	return nil
}

func (m *Roles) stopLocked(rs []*Refresher) {
	for _, r := range rs {
		if cancel := m.running[r]; cancel != nil {
			cancel()
			r.Wait()
			delete(m.running, r)
		}
	}
}

// Wait blocks until every refresher has stopped (cancel Start's context
// first).
func (m *Roles) Wait() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for r := range m.running {
		r.Wait()
	}
}

func values(set map[string]*Refresher) []*Refresher {
	out := make([]*Refresher, 0, len(set))
	for _, r := range set {
		out = append(out, r)
	}
	return out
}

// Rotator is implemented by fallback providers that can rotate a role.
type Rotator interface {
	RotateRole(role string) int
}

// Rotate forces new credentials for the role named, or for every role when
// name is empty. It reports whether any role matched.
func (m *Roles) Rotate(name string) bool {
	found := false
	for role, r := range m.refreshers() {
		if name == "" || name == role {
			r.Rotate()
			found = true
		}
	}
	if rot, ok := m.Fallback.(Rotator); ok {
		if rot.RotateRole(name) > 0 {
			found = true
		}
	}
	return found
}

// Names returns the roles that have a refresher.
func (m *Roles) Names() []string {
	set := m.refreshers()
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	return out
}

// StatusReporter is implemented by fallback providers that can tell the
// state of the roles they serve (the fake provider).
type StatusReporter interface {
	RoleStatus() []ec2.RoleStatus
}

// Status returns the state of every role that has credentials or a
// refresher, sorted by name.
func (m *Roles) Status() []ec2.RoleStatus {
	set := m.refreshers()
	out := make([]ec2.RoleStatus, 0, len(set))
	for _, r := range set {
		out = append(out, r.Status())
	}
	if rep, ok := m.Fallback.(StatusReporter); ok {
		for _, st := range rep.RoleStatus() {
			if set[st.Role] == nil {
				out = append(out, st)
			}
		}
	}
	slices.SortFunc(out, func(a, b ec2.RoleStatus) int { return strings.Compare(a.Role, b.Role) })
	return out
}
