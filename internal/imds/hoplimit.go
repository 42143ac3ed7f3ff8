package imds

import (
	"context"
	"net"
	"net/http"
	"net/netip"
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

// connKey is the context key of the connection a request came on, stored by
// the ConnContext hook of Open; requests served through Handler have none.
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
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
// returns done, which the caller returns once the response is written: done
// flushes the response, waits until the peer has acknowledged it and puts
// the socket's TTL back for the responses that follow on a keep-alive
// connection. (Putting it back right after the write would let TCP
// retransmit a response that died on the way with the normal TTL, and it
// would arrive after all.) If the response is never acknowledged, done
// closes the connection and returns errNoResponse.
func (s *Server) limitHops(w http.ResponseWriter, r *http.Request, req *request, limit int) (done func() error, err error) {
	if limit < 1 {
		limit = 1
	}
	if s.HopDistance(requester(r).Addr) > limit {
		req.fault = "hop-limit"
		t := time.NewTimer(hopLimitHold)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		return nil, s.drop(w)
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if c == nil {
		return noop, nil
	}
	restore, err := setTTL(c, limit)
	if err != nil {
		s.Logger.Warn("cannot set the hop limit of a token response", "remote", r.RemoteAddr, "err", err)
		return noop, nil
	}
	if restore == nil { // not supported here, or nothing to change
		return noop, nil
	}
	return func() error {
		if err := http.NewResponseController(w).Flush(); err != nil {
			return nil // the connection is broken; nothing more is sent on it
		}
		ctx, cancel := context.WithTimeout(r.Context(), hopLimitHold)
		defer cancel()
		if !restore(ctx) {
			// The response was not acknowledged: it has not arrived (its
			// packets died on the way, as they do beyond the hop limit), and
			// its retransmissions must keep the low TTL. The client gives up
			// on this connection; close it.
			req.fault = "hop-limit"
			return s.drop(w)
		}
		return nil
	}, nil
}

func noop() error { return nil }
