package imds

import (
	"net/netip"
	"sync"
	"time"
)

const (
	// refusalLogInterval is how often one requester's refusals for one
	// reason are logged: enough to find the reason, not to fill the disk.
	refusalLogInterval = time.Minute
	// refusalLogBudget caps the refusal lines of every requester together
	// per interval, so that a client varying its headers cannot flood the log.
	refusalLogBudget = 60
	// refusalLogMax bounds the (requester, reason) pairs remembered; past it
	// the memory starts afresh (some lines repeat sooner, none for long).
	refusalLogMax = 4096
	// refusalReasonMax is how much of a reason tells reasons apart (reasons
	// may quote what the client sent).
	refusalReasonMax = 96
)

// refusalLog decides which refused requests get a log line: the first of
// each (requester, reason), then one per interval, within a shared budget.
type refusalLog struct {
	mu         sync.Mutex
	last       map[refusalKey]time.Time
	windowFrom time.Time
	logged     int // lines in the current window
	suppressed int // refusals not logged since the last line
}

type refusalKey struct {
	addr   netip.Addr
	reason string
}

// allow reports whether a refusal of addr for reason should be logged at
// now and, if so, how many refusals went unlogged before it for lack of budget.
func (l *refusalLog) allow(addr netip.Addr, reason string, now time.Time) (ok bool, suppressed int) {
	if len(reason) > refusalReasonMax {
		reason = reason[:refusalReasonMax]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := refusalKey{addr, reason}
	if t, seen := l.last[k]; seen && now.Sub(t) < refusalLogInterval {
		return false, 0
	}
	if now.Sub(l.windowFrom) >= refusalLogInterval {
		l.windowFrom, l.logged = now, 0
	}
	if l.logged >= refusalLogBudget {
		l.suppressed++
		return false, 0
	}
	if l.last == nil || len(l.last) >= refusalLogMax {
		l.last = map[refusalKey]time.Time{}
	}
	l.last[k] = now
	l.logged++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
