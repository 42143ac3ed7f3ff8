//go:build !linux

package neigh

import (
	"errors"
	"net/netip"
)

func table() (map[netip.Addr]string, error) {
	return nil, errors.ErrUnsupported
}
