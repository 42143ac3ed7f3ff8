package ec2

import (
	"context"
	"net/netip"
)

// Requester describes who sent a metadata request, as far as the transport
// can tell.
type Requester struct {
	// Addr is the source address of the connection.
	Addr netip.Addr
	// ProxiedInstance and ProxiedSignature are the identity headers a
	// metadata proxy sets (X-Instance-ID and X-Instance-ID-Signature, as
	// between Neutron's metadata proxy and Nova). They are trusted only from
	// configured proxies and only with a valid HMAC signature.
	ProxiedInstance  string
	ProxiedSignature string
}

// InstanceLocator finds the instance a metadata request comes from.
type InstanceLocator interface {
	// LocateInstance returns the instance of req. The returned instance is an
	// immutable snapshot: callers must not modify it, and a change produces a
	// new pointer. Returns ENOTFOUND if req matches no instance.
	LocateInstance(ctx context.Context, req Requester) (*Instance, error)
}

// SingleInstance serves the same instance to every requester, for tests and
// for embedding the metadata server without a registry.
type SingleInstance struct {
	Instance *Instance
}

// LocateInstance implements InstanceLocator.
func (s SingleInstance) LocateInstance(context.Context, Requester) (*Instance, error) {
	return s.Instance, nil
}

// InstanceStore persists the instances registered at run time. It stores
// specs: the values given by the user, before Derive.
type InstanceStore interface {
	// FindInstanceByName returns the stored spec. Returns ENOTFOUND if none.
	FindInstanceByName(ctx context.Context, name string) (*Instance, error)
	// FindInstances returns every stored spec, sorted by name.
	FindInstances(ctx context.Context) ([]*Instance, error)
	// CreateInstance stores a new spec. Returns ECONFLICT if the name exists.
	CreateInstance(ctx context.Context, inst *Instance) error
	// UpdateInstance replaces the spec of that name. Returns ENOTFOUND if none.
	UpdateInstance(ctx context.Context, inst *Instance) error
	// DeleteInstance removes the spec. Returns ENOTFOUND if none.
	DeleteInstance(ctx context.Context, name string) error
}

// InstanceService manages the instances of a running server. The admin API
// serves it, and the admin client implements it for the CLI.
type InstanceService interface {
	// ListInstances returns every instance, derived, sorted by name.
	ListInstances(ctx context.Context) ([]*Instance, error)
	// GetInstance returns the derived instance. Returns ENOTFOUND if none.
	GetInstance(ctx context.Context, name string) (*Instance, error)
	// GetInstanceSpec returns the instance as given, before derivation, so
	// that a caller can change some fields and SetInstance the result.
	// Returns ENOTFOUND if none.
	GetInstanceSpec(ctx context.Context, name string) (*Instance, error)
	// AddInstance registers spec and returns it derived. Returns EINVALID if
	// it does not validate and ECONFLICT if the name, an address or the MAC
	// is taken.
	AddInstance(ctx context.Context, spec *Instance) (*Instance, error)
	// SetInstance replaces the spec of spec.Name. Returns ENOTFOUND if none,
	// EFORBIDDEN for an instance declared in the config file, and the errors
	// of AddInstance.
	SetInstance(ctx context.Context, spec *Instance) (*Instance, error)
	// UpdateInstance applies u to the spec of name as one change: a writer
	// at the same time cannot undo it. Returns the errors of SetInstance.
	UpdateInstance(ctx context.Context, name string, u InstanceUpdate) (*Instance, error)
	// RemoveInstance deletes the instance. Returns ENOTFOUND if none and
	// EFORBIDDEN for an instance declared in the config file.
	RemoveInstance(ctx context.Context, name string) error
}

// InstancePager lists instances a page at a time, for lists too long to
// build whole (the registry and the admin client implement it).
type InstancePager interface {
	// ListInstancesPage returns up to limit instances, derived, sorted by
	// name, whose names sort after after ("" for the first page), and
	// whether more follow. Returns EINVALID if limit < 1.
	ListInstancesPage(ctx context.Context, after string, limit int) (page []*Instance, more bool, err error)
}

// InstanceBatcher registers several instances as one change.
type InstanceBatcher interface {
	// AddInstanceBatch registers every spec or none: each is validated and
	// checked for clashes (with the others and with the batch) before
	// anything is written; then all are written in one store transaction.
	// It returns them derived, in order. A refused batch is one error
	// naming every refused entry (index and name); nothing is added.
	AddInstanceBatch(ctx context.Context, specs []*Instance) ([]*Instance, error)
}

// InstanceBatchStore is an InstanceStore that stores several new specs in
// one transaction.
type InstanceBatchStore interface {
	// CreateInstances stores every spec or none. Returns ECONFLICT, naming
	// the first name that exists, and stores nothing then.
	CreateInstances(ctx context.Context, insts []*Instance) error
}
