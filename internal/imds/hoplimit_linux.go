package imds

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// lowerTTL sets the IP TTL (IPv6 unicast hop limit) of the socket of c to
// ttl for the token response about to be written, unless st says it is at
// ttl already (the previous response was one too). The returned restorer
// tells when the response has been acknowledged; the connection then puts
// the socket's own TTL back before it writes anything else (st.putBack).
// It is nil when c has no socket or its TTL is ttl anyway.
func lowerTTL(c net.Conn, st *ttlState, ttl int) (ttlRestorer, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.unsupported {
		return nil, nil
	}
	if st.raw == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			st.unsupported = true
			return nil, nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil, err
		}
		level, opt, name := syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS"
		// IPv4 peers of a dual-stack socket have IPv4-mapped addresses, and
		// their packets take IP_TTL (Linux accepts IPPROTO_IP options on
		// IPv6 sockets).
		if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() != nil {
			level, opt, name = syscall.IPPROTO_IP, syscall.IP_TTL, "IP_TTL"
		}
		var old int
		var serr error
		if err := raw.Control(func(fd uintptr) { old, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, fmt.Errorf("getsockopt %s: %w", name, serr)
		}
		st.raw, st.level, st.opt, st.old = raw, level, opt, old
	}
	switch {
	case st.low == ttl:
		// Lowered already for the token response before this one.
	case ttl == st.old:
		st.putBack()
		return nil, nil // nothing to change, nothing to wait for
	default:
		if err := st.set(ttl); err != nil {
			return nil, err
		}
		st.low = ttl
	}
	st.next = true
	return ackWatch{st.raw}, nil
}

func (st *ttlState) set(ttl int) error {
	var serr error
	if err := st.raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), st.level, st.opt, ttl) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt: %w", serr)
	}
	return nil
}

// putBack sets the socket's own TTL again if it is lowered; st.mu held.
func (st *ttlState) putBack() {
	if st.low != 0 {
		_ = st.set(st.old)
		st.low = 0
	}
}

// putBackIfAcked is putBack once everything written has been
// acknowledged; st.mu held.
func (st *ttlState) putBackIfAcked() {
	if st.low != 0 && (ackWatch{st.raw}).acked() {
		st.putBack()
	}
}

// ackWatch tells whether what was written to a socket has been
// acknowledged (see ttlRestorer).
type ackWatch struct{ raw syscall.RawConn }

func (a ackWatch) acked() bool {
	n, ok := unacked(a.raw)
	return !ok || n == 0
}

func (a ackWatch) waitAcked(ctx context.Context) bool { return waitAcked(ctx, a.raw) }

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
