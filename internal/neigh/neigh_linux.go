//go:build linux

package neigh

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

func table() (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := netlink.NeighList(0, family)
		if err != nil {
			return nil, fmt.Errorf("reading the neighbour table: %w", err)
		}
		for _, n := range list {
			if n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) != 0 || len(n.HardwareAddr) != 6 {
				continue
			}
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			out[a.Unmap()] = strings.ToLower(n.HardwareAddr.String())
		}
	}
	return out, nil
}
