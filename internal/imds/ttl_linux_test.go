package imds

import (
	"net"
	"syscall"
	"testing"
)

// ttlOf reads the IP_TTL of c's socket.
func ttlOf(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return v
}

// Consecutive token responses at one TTL keep the socket's TTL lowered;
// putBack restores the socket's own, and a token response at the socket's
// own TTL changes nothing.
func TestLowerTTLState(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := nc.(*net.TCPConn)
	own := ttlOf(t, c)
	var st ttlState

	for i := range 2 {
		r, err := lowerTTL(c, &st, 1)
		if err != nil || r == nil {
			t.Fatalf("token response %d: %v %v", i, r, err)
		}
		if got := ttlOf(t, c); got != 1 || !st.next || st.low != 1 {
			t.Fatalf("token response %d: TTL %d (low %d, next %v), want 1", i, got, st.low, st.next)
		}
		if !r.acked() {
			t.Errorf("nothing written, yet not acknowledged")
		}
		st.next = false // written
	}
	st.putBack()
	if got := ttlOf(t, c); got != own || st.low != 0 {
		t.Errorf("after putBack: TTL %d, want the socket's own %d", got, own)
	}
	if r, err := lowerTTL(c, &st, own); r != nil || err != nil || ttlOf(t, c) != own {
		t.Errorf("a limit equal to the socket's TTL: %v %v, TTL %d", r, err, ttlOf(t, c))
	}
}
