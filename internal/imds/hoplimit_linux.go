package imds

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// setTTL sets the IP TTL (IPv6 unicast hop limit) of the socket of c to
// ttl. The returned restore puts the previous value back once everything
// written to the socket has been acknowledged by the peer (see
// ttlRestorer); it is nil when c has no socket or its TTL is ttl already.
func setTTL(c net.Conn, ttl int) (restore *ttlRestore, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	level, opt, name := syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS"
	// IPv4 peers of a dual-stack socket have IPv4-mapped addresses, and
	// their packets take IP_TTL (Linux accepts IPPROTO_IP options on IPv6
	// sockets).
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() != nil {
		level, opt, name = syscall.IPPROTO_IP, syscall.IP_TTL, "IP_TTL"
	}
	var old int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if old, serr = syscall.GetsockoptInt(int(fd), level, opt); serr == nil && old != ttl {
			serr = syscall.SetsockoptInt(int(fd), level, opt, ttl)
		}
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("setsockopt %s: %w", name, serr)
	}
	if old == ttl {
		return nil, nil // nothing to change, nothing to wait for
	}
	return &ttlRestore{raw: raw, level: level, opt: opt, old: old}, nil
}

// ttlRestore puts the TTL of a socket back to old (see ttlRestorer).
type ttlRestore struct {
	raw             syscall.RawConn
	level, opt, old int
}

func (r *ttlRestore) now() bool {
	if n, ok := unacked(r.raw); ok && n > 0 {
		return false
	}
	r.put()
	return true
}

func (r *ttlRestore) wait(ctx context.Context) bool {
	if !waitAcked(ctx, r.raw) {
		return false
	}
	r.put()
	return true
}

func (r *ttlRestore) put() {
	_ = r.raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), r.level, r.opt, r.old) })
}

// waitAcked polls the socket's send queue (SIOCOUTQ: bytes not yet sent or
// not yet acknowledged) until it is empty or ctx ends; true if it emptied.
//
// A client that reads its token and closes the connection at once ends the
// request's context (the server sees its FIN) in the same segment that
// acknowledges the token; so when ctx ends, the queue is looked at once
// more before the response counts as lost.
func waitAcked(ctx context.Context, raw syscall.RawConn) bool {
	pause := 100 * time.Microsecond
	for {
		n, ok := unacked(raw)
		if !ok {
			return true // cannot tell: assume it arrived
		}
		if n == 0 {
			return true
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			n, ok := unacked(raw)
			return !ok || n == 0
		case <-t.C:
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// unacked returns the bytes of the socket's send queue not yet
// acknowledged; ok is false when the kernel cannot tell.
func unacked(raw syscall.RawConn) (n int32, ok bool) {
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return 0, false
	}
	return n, true
}
