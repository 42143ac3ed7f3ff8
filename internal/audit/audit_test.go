package audit

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imdsdev/imds/internal/ec2"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // fixed instant: records counted, no clock

func rec(inst string, i int, api, path, ua string) ec2.RequestRecord {
	return ec2.RequestRecord{Time: t0.Add(time.Duration(i) * time.Millisecond), Instance: inst, Remote: "10.0.0.1:1234",
		Method: "GET", Path: path, Status: 200, API: api, Latency: time.Microsecond, UserAgent: ua}
}

func TestRingBounds(t *testing.T) {
	l := New(5)
	for i := range 12 {
		l.Record(rec("a", i, "v2", "/latest/meta-data/", "ua"))
	}
	l.Record(rec("", 100, "v1", "/", "scanner"))
	got, err := l.Requests(context.Background(), "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("kept %d records, want 5", len(got))
	}
	for i, r := range got {
		if want := t0.Add(time.Duration(7+i) * time.Millisecond); !r.Time.Equal(want) {
			t.Errorf("record %d: time %v, want %v (oldest first)", i, r.Time, want)
		}
	}
	got, _ = l.Requests(context.Background(), "a", 2)
	if len(got) != 2 || !got[1].Time.Equal(t0.Add(11*time.Millisecond)) {
		t.Errorf("limit 2: %v", got)
	}
	all, _ := l.Requests(context.Background(), "", 0)
	if len(all) != 6 || all[5].Instance != "" {
		t.Errorf("all: %d records, last %+v", len(all), all[len(all)-1])
	}
	all, _ = l.Requests(context.Background(), "", 3)
	if len(all) != 3 || all[2].UserAgent != "scanner" || all[0].Time != t0.Add(10*time.Millisecond) {
		t.Errorf("all, limit 3: %+v", all)
	}
	if got, _ := l.Requests(context.Background(), "nobody", 0); len(got) != 0 {
		t.Errorf("unknown instance: %v", got)
	}
}

func TestReportSurvivesEviction(t *testing.T) {
	l := New(3)
	for i := range 10 {
		api, ua := "v2", "aws-sdk-go-v2/1.0"
		if i%5 == 0 {
			api, ua = "v1", "botocore/1.29.27"
		}
		path := "/latest/meta-data/instance-id"
		if i%2 == 0 {
			path = "/latest/api/token"
		}
		r := rec("web", i, api, path, ua)
		if i == 9 {
			r.Status = 404
		}
		l.Record(r)
	}
	got, err := l.Report(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 10 || got.V1Requests != 2 || got.V2Requests != 8 || got.Errors != 1 {
		t.Errorf("totals: %+v", got)
	}
	if !got.First.Equal(t0) || !got.Last.Equal(t0.Add(9*time.Millisecond)) {
		t.Errorf("first %v, last %v", got.First, got.Last)
	}
	// 5 each: equal counts sort by name.
	wantPaths := []ec2.PathUse{{Path: "/latest/api/token", Requests: 5, V1: 1}, {Path: "/latest/meta-data/instance-id", Requests: 5, V1: 1}}
	if fmt.Sprint(got.Paths) != fmt.Sprint(wantPaths) {
		t.Errorf("paths %v, want %v", got.Paths, wantPaths)
	}
	wantUA := []ec2.AgentUse{{UserAgent: "aws-sdk-go-v2/1.0", Requests: 8}, {UserAgent: "botocore/1.29.27", Requests: 2, V1: 2}}
	if fmt.Sprint(got.UserAgents) != fmt.Sprint(wantUA) {
		t.Errorf("user agents %v, want %v", got.UserAgents, wantUA)
	}
	if _, err := l.Report(context.Background(), "nobody"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("unknown instance: %v, want ENOTFOUND", err)
	}
}

func TestReportOrderAndBound(t *testing.T) {
	l := New(10)
	for i := range 3 {
		l.Record(rec("a", i, "v2", "/b", "ua"))
	}
	l.Record(rec("a", 3, "v2", "/c", "ua"))
	for i := range MaxKeys + 50 {
		l.Record(rec("a", 10+i, "v1", fmt.Sprintf("/scan/%d", i), "ua"))
	}
	r, _ := l.Report(context.Background(), "a")
	if len(r.Paths) != MaxKeys+1 {
		t.Fatalf("%d paths, want %d", len(r.Paths), MaxKeys+1)
	}
	if r.Paths[0] != (ec2.PathUse{Path: Other, Requests: 52, V1: 52}) || r.Paths[1].Path != "/b" || r.Paths[2].Path != "/c" {
		t.Errorf("first paths: %v", r.Paths[:3])
	}
	if r.Paths[3].Path != "/scan/0" || r.Paths[4].Path != "/scan/1" {
		t.Errorf("ties not by name: %v", r.Paths[3:5])
	}
	if r.Requests != MaxKeys+54 || len(r.UserAgents) != 1 {
		t.Errorf("report: %d requests, %d agents", r.Requests, len(r.UserAgents))
	}
}

func TestFollow(t *testing.T) {
	l := New(10)
	ctx, cancel := context.WithCancel(context.Background())
	all := l.Follow(ctx, "")
	onlyB := l.Follow(ctx, "b")
	l.Record(rec("a", 1, "v1", "/1", "ua"))
	l.Record(rec("b", 2, "v2", "/2", "ua"))
	if r := <-all; r.Instance != "a" {
		t.Errorf("all: %+v", r)
	}
	if r := <-all; r.Instance != "b" {
		t.Errorf("all: %+v", r)
	}
	if r := <-onlyB; r.Instance != "b" || r.Path != "/2" {
		t.Errorf("b: %+v", r)
	}
	cancel()
	for range all {
	}
	for range onlyB {
	}
	if n := l.Followers(); n != 0 {
		t.Errorf("%d followers after cancel", n)
	}
	l.Record(rec("b", 3, "v2", "/3", "ua")) // no one listens: nothing blocks
}

func TestFollowDrops(t *testing.T) {
	l := New(10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Follow(ctx, "")
	const n = 1000
	done := make(chan struct{})
	go func() {
		for i := range n {
			l.Record(rec("a", i, "v2", "/", "ua"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked on a follower that does not read")
	}
	got := 0
	timeout := time.After(5 * time.Second)
loop:
	for {
		select {
		case <-ch:
			got++
		case <-time.After(50 * time.Millisecond):
			break loop
		case <-timeout:
			break loop
		}
	}
	if d := l.Dropped(); uint64(got)+d != n || got > FollowBuffer+1 || got < FollowBuffer {
		t.Errorf("received %d, dropped %d, of %d", got, d, n)
	}
}

func TestConcurrent(t *testing.T) {
	l := New(50)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var followed atomic.Int64
	for f := range 4 {
		inst := ""
		if f%2 == 1 {
			inst = "i1"
		}
		ch := l.Follow(ctx, inst)
		wg.Go(func() {
			for range ch {
				followed.Add(1)
			}
		})
	}
	var writers sync.WaitGroup
	const goroutines, each = 16, 500
	for g := range goroutines {
		writers.Go(func() {
			for i := range each {
				l.Record(rec(fmt.Sprintf("i%d", g%4), i, []string{"v1", "v2"}[i%2], fmt.Sprintf("/p/%d", i%7), "ua"))
			}
		})
	}
	readers := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-readers:
				return
			default:
			}
			l.Requests(ctx, "", 20)
			l.Requests(ctx, "i2", 0)
			l.Report(ctx, "i1")
		}
	})
	writers.Wait()
	close(readers)
	cancel()
	wg.Wait()
	total := 0
	for i := range 4 {
		r, err := l.Report(context.Background(), fmt.Sprintf("i%d", i))
		if err != nil {
			t.Fatal(err)
		}
		total += r.Requests
		if r.V1Requests+r.V2Requests != r.Requests || len(r.Paths) != 7 {
			t.Errorf("i%d: %+v", i, r)
		}
	}
	if total != goroutines*each {
		t.Errorf("counted %d requests, want %d", total, goroutines*each)
	}
	if got, _ := l.Requests(context.Background(), "i0", 0); len(got) != 50 {
		t.Errorf("ring of i0 holds %d", len(got))
	}
	t.Logf("followers received %d, dropped %d", followed.Load(), l.Dropped())
}

func BenchmarkRecord(b *testing.B) {
	l := New(0)
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		inst := fmt.Sprintf("i%d", n.Add(1)%8)
		r := rec(inst, 0, "v2", "/latest/meta-data/iam/security-credentials/role", "aws-sdk-go-v2/1.30")
		for pb.Next() {
			l.Record(r)
		}
	})
}

func BenchmarkRecordFollowed(b *testing.B) {
	l := New(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Follow(ctx, "")
	go func() {
		for range ch {
		}
	}()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rec(fmt.Sprintf("i%d", n.Add(1)%8), 0, "v2", "/latest/meta-data/", "ua")
		for pb.Next() {
			l.Record(r)
		}
	})
}

// The record keeps its bound whatever the clients send and however many
// instances there are: 20 instances sending 1,000 requests each with 2 KiB
// paths and user agents, all distinct, stay within the byte budget, in the
// accounting and on the heap; before, they pinned every byte.
func TestMemoryBoundedOverInstances(t *testing.T) {
	const budget = 4 << 20
	l := NewBounded(0, budget)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	long := strings.Repeat("x", 2048)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: only the record's order reads it, no real clock
	for i := range 20 {
		inst := fmt.Sprintf("vm-%d", i)
		for j := range 1000 {
			l.Record(ec2.RequestRecord{Time: t0.Add(time.Duration(j) * time.Millisecond), Instance: inst, Method: "GET", API: "v1",
				Path: "/latest/" + long + strconv.Itoa(j), UserAgent: long + strconv.Itoa(i*1000+j), Remote: "10.0.0.1:1234", Status: 404})
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if l.Bytes() > budget {
		t.Errorf("the record holds %d bytes by its accounting, budget %d", l.Bytes(), budget)
	}
	// The heap holds what the accounting says, give or take the runtime's
	// own overheads (the input was 80 MB).
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 3*budget {
		t.Errorf("the heap grew by %d bytes, budget %d", grew, budget)
	}
	recs, _ := l.Requests(context.Background(), "vm-0", 0)
	if len(recs) == 0 {
		t.Fatal("the first instance kept no records")
	}
	for _, r := range recs {
		if !strings.HasSuffix(r.Path, " bytes]") || len(r.Path) > ec2.MaxRecordedField+20 {
			t.Fatalf("a path kept whole or without a cut mark: %d bytes, ends %q", len(r.Path), r.Path[len(r.Path)-16:])
		}
	}
	// Counters count everything, kept or not.
	total := 0
	for i := range 20 {
		rep, err := l.Report(context.Background(), fmt.Sprintf("vm-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		total += rep.Requests
		if len(rep.Paths) > MaxKeys+1 || len(rep.UserAgents) > MaxKeys+1 {
			t.Errorf("vm-%d: %d paths, %d agents", i, len(rep.Paths), len(rep.UserAgents))
		}
	}
	if total != 20000 {
		t.Errorf("the reports count %d requests, want 20000", total)
	}
	// A ring that cannot grow keeps the most recent requests.
	last := recs[len(recs)-1]
	if !strings.HasPrefix(last.UserAgent, long[:100]) || last.Time != t0.Add(999*time.Millisecond) {
		t.Errorf("the last record kept is from %v, want the last request", last.Time)
	}
}

func TestTruncateField(t *testing.T) {
	if got := ec2.TruncateField("short"); got != "short" {
		t.Errorf("short field changed: %q", got)
	}
	long := strings.Repeat("é", 400) // 800 bytes, 2 per character
	got := ec2.TruncateField(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…[+288 bytes]") || !strings.HasPrefix(got, strings.Repeat("é", 256)) {
		t.Errorf("TruncateField cut at %d bytes: %q", len(got), got[len(got)-20:])
	}
}
