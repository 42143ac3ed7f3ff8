package etcd

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// TestFollowApplies: with Apply, a follower hands over what another
// writer changed, each key's last state once; it lists nothing again, and
// the list kept for an outage follows.
func TestFollowApplies(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, "/apply/", srv)
	other := openStore(t, "/apply/", srv).Instances()
	is := s.Instances()
	if _, err := is.FindInstances(t.Context()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	state := map[string]bool{}
	var puts []string
	reloads := 0
	log := &syncBuffer{}
	f := &Follower{Store: s, ProbeInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(log, nil)),
		Reload: func(context.Context) error { mu.Lock(); reloads++; mu.Unlock(); return nil },
		Apply: func(_ context.Context, put []*ec2.Instance, removed []string) error {
			mu.Lock()
			defer mu.Unlock()
			for _, inst := range put {
				state[inst.Name] = true
				puts = append(puts, inst.Name)
			}
			for _, n := range removed {
				delete(state, n)
			}
			return nil
		}}
	ctx, cancel := context.WithCancel(t.Context())
	f.Start(ctx)
	t.Cleanup(func() { cancel(); f.Wait() })
	names := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for n := range state {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}

	if err := other.CreateInstance(t.Context(), storetest.FullInstance("a")); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateInstances(t.Context(), []*ec2.Instance{storetest.FullInstance("b"), storetest.FullInstance("c")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a, b and c applied", func() bool { return slices.Equal(names(), []string{"a", "b", "c"}) })
	resp, err := s.client.Get(t.Context(), "/apply/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follower at the latest revision", func() bool { return is.Revision() == resp.Header.Revision })
	// This store's own write: the registry has it already.
	if err := is.CreateInstance(t.Context(), storetest.FullInstance("own")); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteInstance(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	// own may come too, when the watch tells of it before the write
	// returns: the registry then applies it twice, to the same effect.
	eventually(t, "a removed", func() bool {
		n := names()
		return slices.Equal(n, []string{"b", "c"}) || slices.Equal(n, []string{"b", "c", "own"})
	})
	mu.Lock()
	if reloads != 0 {
		t.Errorf("%d reloads (puts %v), want none", reloads, puts)
	}
	mu.Unlock()
	// The list answered while etcd is away holds every change.
	last, err := is.decodeAll(*is.last.Load())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, inst := range last {
		got = append(got, inst.Name)
	}
	if !slices.Equal(got, []string{"b", "c", "own"}) {
		t.Errorf("the list kept for an outage holds %v, want b c own", got)
	}
}
