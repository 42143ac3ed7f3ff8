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
}

// InstanceLocator finds the instance a metadata request comes from.
type InstanceLocator interface {
	// LocateInstance returns the instance of req. The returned instance is an
	// immutable snapshot: callers must not modify it, and a change produces a
	// new pointer. Returns ENOTFOUND if req matches no instance.
	LocateInstance(ctx context.Context, req Requester) (*Instance, error)
}

// SingleInstance serves the same instance to every requester: the
// zero-configuration mode of `imds serve`.
type SingleInstance struct {
	Instance *Instance
}

// LocateInstance implements InstanceLocator.
func (s SingleInstance) LocateInstance(context.Context, Requester) (*Instance, error) {
	return s.Instance, nil
}
