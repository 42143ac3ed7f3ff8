// Package audit keeps the recent metadata requests of every instance, and
// counters that outlive them, for `imds logs` and `imds report`.
//
// A Log is the imds server's Recorder: Record runs on the request goroutine
// after the response, so it takes only the lock of the requester's instance,
// allocates nothing once the instance's ring is full and its paths are
// known, and never waits for a follower.
//
// Memory is bounded whatever clients send and however many instances there
// are: the fields a client controls are cut to ec2.MaxRecordedField bytes,
// and the records and distinct paths and user agents of all instances
// together take at most the Log's byte budget (DefaultMaxBytes, 64 MiB, by
// the accounting of recordCost and keyCost). Once the budget is spent, an
// instance's ring stops growing and wraps at the length it has (an
// instance with no ring yet keeps no records, see Missed), and new paths
// and user agents are counted under Other. Only the fixed counters of each
// instance seen (about 512 bytes, outside the budget: a report needs them)
// come on top.
package audit

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

const (
	// DefaultPerInstance is the number of requests kept per instance.
	DefaultPerInstance = 1000
	// MaxKeys bounds the distinct paths and user agents counted per
	// instance; the rest are counted under Other, so that a scanner cannot
	// make the counters grow without bound.
	MaxKeys = 1000
	// Other is the path and user agent the requests beyond MaxKeys are
	// counted under.
	Other = "(other)"
	// FollowBuffer is the number of records a follower may lag behind before
	// it misses some.
	FollowBuffer = 256
	// DefaultMaxBytes is the default budget of a Log for records and keys
	// of all instances together.
	DefaultMaxBytes = 64 << 20

	// recordOverhead and keyOverhead are what a kept record and a counted
	// key cost besides their strings' bytes (the struct or map entry and
	// its share of the map's buckets), rounded up.
	recordOverhead = 192
	keyOverhead    = 80
)

// Log is an ec2.RequestLog fed through Record. The zero value is not usable;
// call New.
type Log struct {
	size      int
	maxBytes  int64
	used      atomic.Int64 // bytes of records and keys kept, by recordCost and keyCost
	missed    atomic.Uint64
	instances sync.Map // instance name ("" for unknown requesters) → *instanceLog

	subMu   sync.Mutex                    // serialises changes of subs
	subs    atomic.Pointer[[]*subscriber] // copied on write, read by Record
	dropped atomic.Uint64
}

var _ ec2.RequestLog = (*Log)(nil)

// New returns a Log keeping the last perInstance requests of every instance
// and of the unknown requesters (DefaultPerInstance when perInstance <= 0).
func New(perInstance int) *Log { return NewBounded(perInstance, DefaultMaxBytes) }

// NewBounded is New with a byte budget for the records and keys of all
// instances together (DefaultMaxBytes when maxBytes <= 0).
func NewBounded(perInstance int, maxBytes int64) *Log {
	if perInstance <= 0 {
		perInstance = DefaultPerInstance
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Log{size: perInstance, maxBytes: maxBytes}
}

// Bytes returns the bytes of records and keys kept, as the budget counts
// them; at most the budget.
func (l *Log) Bytes() int64 { return l.used.Load() }

// Missed returns how many requests were counted but not kept as records
// because the budget was spent before their instance had a ring.
func (l *Log) Missed() uint64 { return l.missed.Load() }

// charge takes n bytes of the budget if they are left.
func (l *Log) charge(n int64) bool {
	for {
		u := l.used.Load()
		if u+n > l.maxBytes {
			return false
		}
		if l.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func recordCost(r *ec2.RequestRecord) int64 {
	return int64(recordOverhead + len(r.Instance) + len(r.Remote) + len(r.Method) + len(r.Path) + len(r.API) + len(r.UserAgent) + len(r.Fault))
}

func keyCost(k string) int64 { return int64(keyOverhead + len(k)) }

// use counts the requests for one path or of one user agent.
type use struct {
	requests, v1 int
}

// instanceLog is the ring and the counters of one instance.
type instanceLog struct {
	mu   sync.Mutex
	ring []ec2.RequestRecord // grows to the Log's size, then wraps
	next int                 // where the next record goes once the ring is full

	requests, v1, v2, errors int
	first, last              time.Time
	paths, agents            map[string]use
}

func (l *Log) instance(name string, create bool) *instanceLog {
	if v, ok := l.instances.Load(name); ok {
		return v.(*instanceLog)
	}
	if !create {
		return nil
	}
	v, _ := l.instances.LoadOrStore(name, &instanceLog{paths: map[string]use{}, agents: map[string]use{}})
	return v.(*instanceLog)
}

// Record keeps rec and hands it to the followers that want it. It never
// blocks: a follower whose buffer is full misses rec (see Dropped).
func (l *Log) Record(rec ec2.RequestRecord) {
	// The imds server cuts these already; a Log keeps its bound whoever
	// feeds it.
	rec.Method, rec.Path, rec.UserAgent = ec2.TruncateField(rec.Method), ec2.TruncateField(rec.Path), ec2.TruncateField(rec.UserAgent)
	cost := recordCost(&rec)
	il := l.instance(rec.Instance, true)
	il.mu.Lock()
	switch {
	// Grow only while the oldest record is ring[0] (next is 0).
	case len(il.ring) < l.size && il.next == 0 && l.charge(cost):
		il.ring = append(il.ring, rec)
	case len(il.ring) == 0:
		l.missed.Add(1)
	default:
		// Replace the oldest record; a bigger one needs the difference.
		delta := cost - recordCost(&il.ring[il.next])
		if delta <= 0 {
			l.used.Add(delta)
		} else if !l.charge(delta) {
			l.missed.Add(1)
			break
		}
		il.ring[il.next] = rec
		il.next++
		if il.next == len(il.ring) {
			il.next = 0
		}
	}
	il.requests++
	v1 := 0
	switch rec.API {
	case "v1":
		il.v1++
		v1 = 1
	case "v2":
		il.v2++
	}
	if rec.Status >= 400 {
		il.errors++
	}
	if il.requests == 1 || rec.Time.Before(il.first) {
		il.first = rec.Time
	}
	if rec.Time.After(il.last) {
		il.last = rec.Time
	}
	l.count(il.paths, rec.Path, v1)
	l.count(il.agents, rec.UserAgent, v1)
	il.mu.Unlock()

	if subs := l.subs.Load(); subs != nil {
		for _, s := range *subs {
			if s.instance != "" && s.instance != rec.Instance {
				continue
			}
			select {
			case s.in <- rec:
			default:
				s.dropped.Add(1)
				l.dropped.Add(1)
			}
		}
	}
}

// count adds one request to key in m, or to Other once m holds MaxKeys keys
// or the budget is spent.
func (l *Log) count(m map[string]use, key string, v1 int) {
	u, ok := m[key]
	if !ok && key != Other && (len(m) >= MaxKeys || !l.charge(keyCost(key))) {
		key = Other
		u = m[key]
	}
	u.requests++
	u.v1 += v1
	m[key] = u
}

// Dropped returns how many records followers missed because they read too
// slowly.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Requests implements ec2.RequestLog: up to limit (every one kept when limit
// <= 0) of the most recent requests of instance, or of every instance and
// the unknown requesters when instance is "", oldest first. An instance
// never seen has none.
func (l *Log) Requests(_ context.Context, instance string, limit int) ([]ec2.RequestRecord, error) {
	var out []ec2.RequestRecord
	if instance != "" {
		if il := l.instance(instance, false); il != nil {
			out = il.snapshot(limit)
		}
		return out, nil
	}
	l.instances.Range(func(_, v any) bool {
		out = append(out, v.(*instanceLog).snapshot(limit)...)
		return true
	})
	slices.SortStableFunc(out, func(a, b ec2.RequestRecord) int { return a.Time.Compare(b.Time) })
	if limit > 0 && len(out) > limit {
		out = slices.Clone(out[len(out)-limit:])
	}
	return out, nil
}

// snapshot copies the last limit records of the ring, oldest first.
func (il *instanceLog) snapshot(limit int) []ec2.RequestRecord {
	il.mu.Lock()
	defer il.mu.Unlock()
	n := len(il.ring)
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]ec2.RequestRecord, 0, n)
	// The ring in order is ring[next:] then ring[:next].
	out = append(out, il.ring[il.next:]...)
	out = append(out, il.ring[:il.next]...)
	return out[len(out)-n:]
}

// Report implements ec2.RequestLog from the counters, which count every
// request recorded, also those the ring no longer holds. instance "" is the
// unknown requesters. Returns ENOTFOUND when nothing was recorded for
// instance.
func (l *Log) Report(_ context.Context, instance string) (ec2.RequestReport, error) {
	il := l.instance(instance, false)
	if il == nil {
		if instance == "" {
			return ec2.RequestReport{}, ec2.Errorf(ec2.ENOTFOUND, "no requests from unknown requesters were recorded")
		}
		return ec2.RequestReport{}, ec2.Errorf(ec2.ENOTFOUND, "no requests were recorded for instance %q", instance)
	}
	il.mu.Lock()
	defer il.mu.Unlock()
	r := ec2.RequestReport{
		Instance:   instance,
		Requests:   il.requests,
		V1Requests: il.v1,
		V2Requests: il.v2,
		Errors:     il.errors,
		First:      il.first,
		Last:       il.last,
		Paths:      make([]ec2.PathUse, 0, len(il.paths)),
		UserAgents: make([]ec2.AgentUse, 0, len(il.agents)),
	}
	for p, u := range il.paths {
		r.Paths = append(r.Paths, ec2.PathUse{Path: p, Requests: u.requests, V1: u.v1})
	}
	for a, u := range il.agents {
		r.UserAgents = append(r.UserAgents, ec2.AgentUse{UserAgent: a, Requests: u.requests, V1: u.v1})
	}
	slices.SortFunc(r.Paths, func(a, b ec2.PathUse) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Path, b.Path))
	})
	slices.SortFunc(r.UserAgents, func(a, b ec2.AgentUse) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.UserAgent, b.UserAgent))
	})
	return r, nil
}

// subscriber is one follower. Record sends on in, which is never closed; a
// goroutine forwards to out and closes out when the follower is done, so
// that Record can never send on a closed channel.
type subscriber struct {
	instance string
	in       chan ec2.RequestRecord
	dropped  atomic.Uint64
}

// Follow implements ec2.RequestLog. The records of instance ("" for every
// one) recorded from now on arrive on the channel until ctx is done, when it
// is closed. A follower that lags FollowBuffer records behind misses the
// next ones (see Dropped).
func (l *Log) Follow(ctx context.Context, instance string) <-chan ec2.RequestRecord {
	s := &subscriber{instance: instance, in: make(chan ec2.RequestRecord, FollowBuffer)}
	out := make(chan ec2.RequestRecord)
	l.subscribe(s)
	go func() {
		defer close(out)
		defer l.unsubscribe(s)
		for {
			select {
			case <-ctx.Done():
				return
			case rec := <-s.in:
				select {
				case out <- rec:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (l *Log) subscribe(s *subscriber) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	var subs []*subscriber
	if old := l.subs.Load(); old != nil {
		subs = slices.Clone(*old)
	}
	subs = append(subs, s)
	l.subs.Store(&subs)
}

func (l *Log) unsubscribe(s *subscriber) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	old := l.subs.Load()
	if old == nil {
		return
	}
	subs := slices.DeleteFunc(slices.Clone(*old), func(x *subscriber) bool { return x == s })
	if len(subs) == 0 {
		l.subs.Store(nil)
		return
	}
	l.subs.Store(&subs)
}

// Followers returns the number of followers, for tests and metrics.
func (l *Log) Followers() int {
	if subs := l.subs.Load(); subs != nil {
		return len(*subs)
	}
	return 0
}
