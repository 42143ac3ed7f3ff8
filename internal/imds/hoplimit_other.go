//go:build !linux

package imds

import (
	"context"
	"net"
)

// setTTL would set the TTL of the socket of c; only Linux does it, elsewhere
// token responses go out with the system's TTL and only the configured
// HopDistances apply.
func setTTL(net.Conn, int) (restore *ttlRestore, err error) {
	return nil, nil
}

// ttlRestore is never made here.
type ttlRestore struct{}

func (*ttlRestore) now() bool                 { return true }
func (*ttlRestore) wait(context.Context) bool { return true }
