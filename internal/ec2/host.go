package ec2

import (
	"context"
	"time"
)

// Host is one imds server among those sharing a store (store.etcd).
type Host struct {
	// Name is unique among the live hosts (store.etcd.host, the machine's
	// host name by default).
	Name string
	// Listen are the addresses its metadata server listens on.
	Listen []string
	// Version is the imds version it runs.
	Version string
	// Started is when it registered itself.
	Started time.Time
	// Lease is the store's lease that keeps the host listed: the host
	// renews it while it runs, and a host that stops renewing (killed, cut
	// off) drops out of the list when its TTL runs out.
	Lease string
	TTL   time.Duration
	// Self marks the host that answered.
	Self bool
	// Pinned counts the instances pinned to it (Instance.Host), as the
	// host that answered sees them; the admin API's host list fills it.
	Pinned int
}

// Pins is how the instances spread over the hosts.
type Pins struct {
	// ByHost counts the instances pinned to each host name.
	ByHost map[string]int
	// Unpinned counts the instances every host serves.
	Unpinned int
}

// PinCounter counts the instances pinned to each host.
type PinCounter interface {
	CountPins() Pins
}

// HostService lists the live hosts of a shared store.
type HostService interface {
	// ListHosts returns the live hosts, sorted by name. Returns
	// EUNSUPPORTED without a shared store and EUNAVAILABLE when the store
	// does not answer.
	ListHosts(ctx context.Context) ([]Host, error)
}
