//go:build !linux

package imds

import "net"

// lowerTTL would set the TTL of the socket of c; only Linux does it,
// elsewhere token responses go out with the system's TTL and only the
// configured HopDistances apply.
func lowerTTL(net.Conn, *ttlState, int) (ttlRestorer, error) { return nil, nil }

func (st *ttlState) putBack()        {}
func (st *ttlState) putBackIfAcked() {}
