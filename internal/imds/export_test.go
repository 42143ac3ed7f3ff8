package imds

import (
	"net/netip"
	"time"
)

// RefusalLogBudget exposes refusalLogBudget to the external tests.
const RefusalLogBudget = refusalLogBudget

// RefusalLogForTest exposes refusalLog to the external tests.
type RefusalLogForTest struct{ l refusalLog }

// Allow calls refusalLog.allow.
func (r *RefusalLogForTest) Allow(addr netip.Addr, reason string, now time.Time) (bool, int) {
	return r.l.allow(addr, reason, now)
}

// RequestPath exposes requestPath to the external tests.
func RequestPath(raw string) (path, host string, err error) { return requestPath(raw) }
