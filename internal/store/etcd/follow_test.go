package etcd

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/storetest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// follow starts a Follower on s whose Reload lists the instances and
// counts the names it saw.
func follow(t *testing.T, s *Store, log *syncBuffer) (*Follower, *atomic.Int64) {
	t.Helper()
	var seen atomic.Int64
	f := &Follower{Store: s, ProbeInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(log, nil)),
		Reload: func(ctx context.Context) error {
			all, err := s.Instances().FindInstances(ctx)
			if err == nil {
				seen.Store(int64(len(all)))
			}
			return err
		}}
	ctx, cancel := context.WithCancel(t.Context())
	f.Start(ctx)
	t.Cleanup(func() { cancel(); f.Wait() })
	return f, &seen
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowAfterCompaction: a follower whose last list is older than
// etcd's compacted revision lists again, once, and then follows changes.
func TestFollowAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, "/compact/", srv)
	other := openStore(t, "/compact/", srv).Instances()
	if _, err := s.Instances().FindInstances(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Changes the follower has not seen, then their history compacted.
	for _, n := range []string{"a", "b", "c"} {
		if err := other.CreateInstance(t.Context(), storetest.FullInstance(n)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.client.Get(t.Context(), "/compact/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	f, seen := follow(t, s, log)
	eventually(t, "the list after the compaction", func() bool { return seen.Load() == 3 })
	if f.Resyncs() != 1 || !strings.Contains(log.String(), "compacted") {
		t.Errorf("resyncs %d, log:\n%s\nwant one resync, said in the log", f.Resyncs(), log)
	}
	if err := other.CreateInstance(t.Context(), storetest.FullInstance("d")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the change after the resync", func() bool { return seen.Load() == 4 })
	if !f.Online() {
		t.Error("Online is false with etcd up")
	}
}

// TestFollowAcrossMemberLoss: with three members, stopping the one the
// follower's client talks to first keeps it following through the others.
func TestFollowAcrossMemberLoss(t *testing.T) {
	members := etcdtest.StartCluster(t, 3)
	s := openStore(t, "/members/", members...)
	other := openStore(t, "/members/", members[1], members[2]).Instances()
	if _, err := s.Instances().FindInstances(t.Context()); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	_, seen := follow(t, s, log)
	if err := other.CreateInstance(t.Context(), storetest.FullInstance("a")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first change", func() bool { return seen.Load() == 1 })
	members[0].Stop()
	// A write caught by the election that follows may time out with its
	// outcome unknown (etcd does not retry a proposal its leader lost):
	// retried, it succeeds or finds the instance there.
	eventually(t, "a write with two members of three", func() bool {
		err := other.CreateInstance(t.Context(), storetest.FullInstance("b"))
		if err != nil {
			t.Logf("CreateInstance with two members of three: %v", err)
		}
		return err == nil || ec2.ErrorCode(err) == ec2.ECONFLICT
	})
	eventually(t, "the change made after a member stopped", func() bool { return seen.Load() == 2 })
}
