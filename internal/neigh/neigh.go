// Package neigh reads the kernel neighbour table (ARP and NDP), so that an
// instance can be recognised by its MAC when its address is not fixed.
package neigh

import (
	"context"
	"net/netip"
)

// Table returns the reachable neighbours of every interface: address → MAC
// (lower-case, colon separated). Incomplete and failed entries are left out.
func Table(ctx context.Context) (map[netip.Addr]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return table()
}
