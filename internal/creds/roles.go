package creds

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/imdsdev/imds/internal/ec2"
)

// Roles answers credential requests for every role: from its Refresher when
// the role has a source, otherwise from Fallback (the fake provider).
type Roles struct {
	Fallback   ec2.CredentialProvider
	refreshers map[string]*Refresher
}

var _ ec2.CredentialProvider = (*Roles)(nil)

// NewRoles returns Roles for the given refreshers, keyed by role name.
func NewRoles(fallback ec2.CredentialProvider, refreshers ...*Refresher) *Roles {
	m := &Roles{Fallback: fallback, refreshers: make(map[string]*Refresher, len(refreshers))}
	for _, r := range refreshers {
		m.refreshers[r.Role] = r
	}
	return m
}

// Credentials implements ec2.CredentialProvider.
func (m *Roles) Credentials(ctx context.Context, inst *ec2.Instance, role string) (ec2.Credentials, error) {
	if inst.Role == nil || inst.Role.Name != role {
		return ec2.Credentials{}, ec2.Errorf(ec2.ENOTFOUND, "instance %s has no role %q", inst.Name, role)
	}
	if r := m.refreshers[role]; r != nil {
		return r.Current()
	}
	return m.Fallback.Credentials(ctx, inst, role)
}

// Start starts every refresher, fetching their first credentials in parallel.
func (m *Roles) Start(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range m.refreshers {
		wg.Add(1)
		go func() { defer wg.Done(); r.Start(ctx) }()
	}
	wg.Wait()
}

// Wait blocks until every refresher has stopped.
func (m *Roles) Wait() {
	for _, r := range m.refreshers {
		r.Wait()
	}
}

// Rotator is implemented by fallback providers that can rotate a role.
type Rotator interface {
	RotateRole(role string) int
}

// Rotate forces new credentials for the role named, or for every role when
// name is empty. It reports whether any role matched.
func (m *Roles) Rotate(name string) bool {
	found := false
	for role, r := range m.refreshers {
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
	out := make([]string, 0, len(m.refreshers))
	for n := range m.refreshers {
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
	out := make([]ec2.RoleStatus, 0, len(m.refreshers))
	for _, r := range m.refreshers {
		out = append(out, r.Status())
	}
	if rep, ok := m.Fallback.(StatusReporter); ok {
		for _, st := range rep.RoleStatus() {
			if m.refreshers[st.Role] == nil {
				out = append(out, st)
			}
		}
	}
	slices.SortFunc(out, func(a, b ec2.RoleStatus) int { return strings.Compare(a.Role, b.Role) })
	return out
}
