//go:build !linux

package imds

import "net"

// watchPeer would tell when the peer of c goes away; elsewhere than on
// Linux held requests run their full time.
func watchPeer(net.Conn, chan struct{}) (stop func()) { return func() {} }
