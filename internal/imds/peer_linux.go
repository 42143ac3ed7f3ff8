package imds

import (
	"net"
	"syscall"
	"time"
)

// watchPeer closes gone when the peer of c closes or resets the
// connection, as net/http ends a request's context; stop ends the watch
// (and must be called before the server reads from c again). Like
// net/http's, the watch ends quietly when the client sends more (a
// pipelined request): the client is still there. It only peeks at the
// socket, so nothing is taken from the next request.
func watchPeer(c net.Conn, gone chan struct{}) (stop func()) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// A deadline of the server's (header or idle timeout) must not end
	// the watch; stop sets one to end it.
	_ = c.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	stopping := make(chan struct{})
	go func() {
		defer close(done)
		var buf [1]byte
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return rerr != syscall.EAGAIN && rerr != syscall.EINTR
		})
		select {
		case <-stopping:
			return
		default:
		}
		if err != nil || rerr != nil || n == 0 { // closed, reset or end of stream
			close(gone)
		}
	}()
	return func() {
		close(stopping)
		_ = c.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = c.SetReadDeadline(time.Time{})
	}
}
