package imds

import (
	"context"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// HopDistance says how many IP hops away the requesters in a network are,
// for setups where the hops a real EC2 network would have do not exist in
// the kernel: a container on a bridge whose requests are DNAT'ed to a
// server on the same host is one hop further than the host on EC2, but its
// replies are not forwarded, so no TTL is decremented on the way.
type HopDistance struct {
	CIDR netip.Prefix
	// Hops is 1 for a requester on the instance itself or directly attached,
	// 2 for a container behind a bridge, and so on (1–64).
	Hops int
}

// HopDistance returns how many hops away addr is: the Hops of the longest
// prefix of HopDistances that holds it, 1 (direct) when none does.
func (s *Server) HopDistance(addr netip.Addr) int {
	addr = addr.Unmap()
	best, hops := -1, 1
	for _, d := range s.current().hops {
		if d.CIDR.Bits() > best && d.CIDR.Contains(addr) {
			best, hops = d.CIDR.Bits(), max(d.Hops, 1)
		}
	}
	return hops
}

// hopLimitHold is how long a token request from beyond the hop limit is
// held before its connection is closed without an answer (the client
// normally gives up much sooner, and then the request ends at once).
const hopLimitHold = tokenTimeoutHold

// limitHops prepares the token response of a PUT /latest/api/token for the
// instance's HttpPutResponseHopLimit, as EC2 sends it: with IP TTL (IPv6
// hop limit) set to limit. A requester further away than limit by the
// configured HopDistances never sees the response; then limitHops holds the
// request until the client gives up, closes the connection and returns
// errNoResponse. Otherwise it sets the TTL of the connection's socket and
// leaves req.restore for the server to call once the response is on the
// wire: it waits until the peer has acknowledged the response and puts the
// socket's TTL back for the responses that follow on a keep-alive
// connection. (Putting it back right after the write would let TCP
// retransmit a response that died on the way with the normal TTL, and it
// would arrive after all.) If the response is never acknowledged, the
// connection is closed and the request logged as unanswered.
// ttlRestorer tells whether a token response sent with a lowered TTL has
// been acknowledged (the connection puts the TTL back; see ttlState).
type ttlRestorer interface {
	// acked looks once: true if everything written has been acknowledged
	// (or the kernel cannot tell).
	acked() bool
	// waitAcked waits until it has been (true) or ctx ends (false).
	waitAcked(ctx context.Context) bool
}

// ttlState is what a listener connection knows of its socket's TTL: its
// own value, read once, and whether it is lowered for token responses.
// Consecutive token responses at one TTL keep it lowered; the connection
// puts it back before it writes anything else (ttlState.putBack).
type ttlState struct {
	mu          sync.Mutex
	raw         syscall.RawConn // nil until the first token response
	level, opt  int
	old         int  // the socket's own TTL
	low         int  // the lowered TTL in force; 0: old is
	next        bool // what is being written is a token response at low
	unsupported bool // the socket has no TTL to set
}

func (s *Server) limitHops(x exchange, req *request, limit int) error {
	if limit < 1 {
		limit = 1
	}
	if s.HopDistance(x.peer()) > limit {
		req.fault = "hop-limit"
		t := time.NewTimer(hopLimitHold)
		select {
		case <-t.C:
		case <-x.gone():
			t.Stop()
		}
		return s.drop(x)
	}
	c := x.conn()
	ci := connInfoOf(c)
	if ci == nil {
		return nil
	}
	restore, err := lowerTTL(c, &ci.ttl, limit)
	if err != nil {
		s.Logger.Warn("cannot set the hop limit of a token response", "remote", x.remoteAddr(), "err", err)
		return nil
	}
	if restore != nil { // nil: not supported here, or nothing to change
		req.restore = restore
	}
	return nil
}
