// Package admintest provides an in-memory ec2.InstanceService and a helper
// that serves it on a real admin socket, for tests of the admin API and of
// the CLI. The real registry has its own end-to-end tests.
package admintest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

// FailPrefix names instances whose lookups fail: GetInstance of
// "fail-CODE" returns an *ec2.Error with that code, and of "fail-plain" an
// error that is not an *ec2.Error (whose text must never reach a client).
const FailPrefix = "fail-"

// SecretFailure is the text of the plain error of "fail-plain".
const SecretFailure = "disk on fire at /secret/path"

// Service is an in-memory ec2.InstanceService with the registry's rules:
// names, source addresses and MACs are unique; config instances cannot be
// changed or removed.
type Service struct {
	mu    sync.Mutex
	specs map[string]*ec2.Instance // with Origin set
}

var _ ec2.InstanceService = (*Service)(nil)

// NewService returns a Service holding the given config instances (specs).
func NewService(config ...*ec2.Instance) *Service {
	s := &Service{specs: map[string]*ec2.Instance{}}
	for _, c := range config {
		c = c.Clone()
		c.Origin = ec2.OriginConfig
		s.specs[c.Name] = c
	}
	return s
}

func derive(spec *ec2.Instance) (*ec2.Instance, error) {
	inst := spec.Clone()
	ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("admintest"), Launch: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}) // fixed instant: a launch time that is only served
	if errs := inst.Validate(); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, ec2.Errorf(ec2.EINVALID, "instance %q: %s", spec.Name, strings.Join(msgs, "; "))
	}
	return inst, nil
}

func fail(name string) error {
	code, ok := strings.CutPrefix(name, FailPrefix)
	if !ok {
		return nil
	}
	if code == "plain" {
		return errors.New(SecretFailure)
	}
	return ec2.Errorf(code, "simulated %s error", code)
}

// ListInstances implements ec2.InstanceService.
func (s *Service) ListInstances(context.Context) ([]*ec2.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.specs))
	for n := range s.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*ec2.Instance, 0, len(names))
	for _, n := range names {
		inst, err := derive(s.specs[n])
		if err != nil {
			return nil, err
		}
		out = append(out, inst)
	}
	return out, nil
}

// GetInstance implements ec2.InstanceService.
func (s *Service) GetInstance(_ context.Context, name string) (*ec2.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	spec, err := s.specLocked(name)
	if err != nil {
		return nil, err
	}
	return derive(spec)
}

// GetInstanceSpec implements ec2.InstanceService.
func (s *Service) GetInstanceSpec(_ context.Context, name string) (*ec2.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	spec, err := s.specLocked(name)
	if err != nil {
		return nil, err
	}
	return spec.Clone(), nil
}

// specLocked returns the stored spec of name, or the simulated failure
// the name asks for. s.mu is held.
func (s *Service) specLocked(name string) (*ec2.Instance, error) {
	if err := fail(name); err != nil {
		return nil, err
	}
	spec, ok := s.specs[name]
	if !ok {
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	return spec, nil
}

// conflict reports an instance other than inst.Name with the same source
// address or primary MAC.
func (s *Service) conflict(inst *ec2.Instance) error {
	for name, other := range s.specs {
		if name == inst.Name {
			continue
		}
		for _, a := range inst.SourceAddrs {
			if slices.Contains(other.SourceAddrs, a) {
				return ec2.Errorf(ec2.ECONFLICT, "address %s is already used by instance %q", a, name)
			}
		}
		if mac := inst.Primary().MAC; mac != "" && mac == other.Primary().MAC {
			return ec2.Errorf(ec2.ECONFLICT, "MAC %s is already used by instance %q", mac, name)
		}
	}
	return nil
}

// AddInstance implements ec2.InstanceService.
func (s *Service) AddInstance(_ context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	inst, err := derive(spec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.specs[spec.Name]; ok {
		return nil, ec2.Errorf(ec2.ECONFLICT, "an instance named %q exists", spec.Name)
	}
	return s.storeLocked(spec, inst)
}

// SetInstance implements ec2.InstanceService.
func (s *Service) SetInstance(_ context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setLocked(spec)
}

// UpdateInstance implements ec2.InstanceService.
func (s *Service) UpdateInstance(_ context.Context, name string, u ec2.InstanceUpdate) (*ec2.Instance, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.specLocked(name)
	if err != nil {
		return nil, err
	}
	spec := old.Clone()
	u.Apply(spec)
	return s.setLocked(spec)
}

// storeLocked keeps spec (derived: inst) unless it clashes with another
// instance. s.mu is held.
func (s *Service) storeLocked(spec, inst *ec2.Instance) (*ec2.Instance, error) {
	if err := s.conflict(inst); err != nil {
		return nil, err
	}
	stored := spec.Clone()
	stored.Origin = ec2.OriginAPI
	s.specs[spec.Name] = stored
	inst.Origin = ec2.OriginAPI
	return inst, nil
}

// setLocked replaces the spec of spec.Name. s.mu is held.
func (s *Service) setLocked(spec *ec2.Instance) (*ec2.Instance, error) {
	old, ok := s.specs[spec.Name]
	if !ok {
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", spec.Name)
	}
	if old.Origin == ec2.OriginConfig {
		return nil, ec2.Errorf(ec2.EFORBIDDEN, "instance %q is declared in the config file; change it there", spec.Name)
	}
	inst, err := derive(spec)
	if err != nil {
		return nil, err
	}
	return s.storeLocked(spec, inst)
}

// RemoveInstance implements ec2.InstanceService.
func (s *Service) RemoveInstance(_ context.Context, name string) error {
	if err := fail(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.specs[name]
	if !ok {
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	if old.Origin == ec2.OriginConfig {
		return ec2.Errorf(ec2.EFORBIDDEN, "instance %q is declared in the config file; remove it there", name)
	}
	delete(s.specs, name)
	return nil
}

// SocketDir returns a new directory for sockets, removed at the end of the
// test. t.TempDir can exceed the 104 bytes a socket path may have.
func SocketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "imds-adm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// MustOpenServer serves svc on a Unix socket in a fresh directory (and on
// TCP when configure sets TCPAddr), closed at the end of the test.
func MustOpenServer(tb testing.TB, svc ec2.InstanceService, logger *slog.Logger, configure func(*admin.Server)) *admin.Server {
	tb.Helper()
	s := admin.NewServer()
	s.Service = svc
	s.SocketPath = filepath.Join(SocketDir(tb), "run", "admin.sock")
	if logger != nil {
		s.Logger = logger
	}
	if configure != nil {
		configure(s)
	}
	if err := s.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// Instance returns a spec named name as a user would give it.
func Instance(name string, addrs ...string) *ec2.Instance {
	inst := ec2.NewDefaultInstance()
	inst.Name = name
	inst.SourceAddrs = addrs
	return inst
}
