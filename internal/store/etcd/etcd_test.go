package etcd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// openStore connects to srv under prefix.
func openStore(t *testing.T, prefix string, srv ...*etcdtest.Server) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{Endpoints: etcdtest.Endpoints(srv...), Prefix: prefix, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestInstanceStore runs the store contract against a real etcd; each
// subtest gets a prefix of its own, so one server serves many fresh, empty
// stores.
func TestInstanceStore(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) ec2.InstanceStore {
		return openStore(t, fmt.Sprintf("/contract-%d/", n.Add(1)), srv).Instances()
	})
}

// TestHostsCreatingOneName: two hosts (two clients) creating the same names
// at once get exactly one success per name; the loser sees ECONFLICT.
func TestHostsCreatingOneName(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := openStore(t, "/race/", srv).Instances(), openStore(t, "/race/", srv).Instances()
	const names = 30
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for _, s := range []*InstanceStore{a, b} {
		wg.Go(func() {
			for i := range names {
				err := s.CreateInstance(t.Context(), storetest.FullInstance(fmt.Sprintf("vm-%02d", i)))
				switch ec2.ErrorCode(err) {
				case "":
					wins.Add(1)
				case ec2.ECONFLICT:
					conflicts.Add(1)
				default:
					t.Errorf("CreateInstance: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if wins.Load() != names || conflicts.Load() != names {
		t.Errorf("%d creations succeeded and %d conflicted, want %d and %d", wins.Load(), conflicts.Load(), names, names)
	}
	all, err := b.FindInstances(t.Context())
	if err != nil || len(all) != names {
		t.Fatalf("FindInstances: %d, %v; want %d", len(all), err, names)
	}
	if a.Revision() == 0 && b.Revision() == 0 {
		t.Error("Revision is 0 after a list")
	}
}

// TestPrefixesApart: stores under different prefixes do not see each
// other's instances, and a prefix that is a string prefix of another one
// ("/a" and "/ab") is kept apart by the trailing slash.
func TestPrefixesApart(t *testing.T) {
	srv := etcdtest.Start(t)
	a, ab := openStore(t, "/a", srv).Instances(), openStore(t, "/ab/", srv).Instances()
	if err := a.CreateInstance(t.Context(), storetest.FullInstance("one")); err != nil {
		t.Fatal(err)
	}
	if all, err := ab.FindInstances(t.Context()); err != nil || len(all) != 0 {
		t.Errorf("the other prefix lists %d instances (%v), want none", len(all), err)
	}
}

// TestUnreachable: with etcd stopped, every call fails within the timeout
// with EUNAVAILABLE naming the endpoints, and Open refuses to start.
func TestUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := Open(t.Context(), Config{Endpoints: []string{srv.ClientURL}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Stop()
	is := s.Instances()
	for op, err := range map[string]error{
		"CreateInstance": is.CreateInstance(t.Context(), storetest.FullInstance("x")),
		"DeleteInstance": is.DeleteInstance(t.Context(), "x"),
		// Nothing listed yet: no last list to answer with.
		"FindInstances": second(is.FindInstances(t.Context())),
		"Ping":          s.Ping(t.Context()),
	} {
		if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.Contains(ec2.ErrorMessage(err), srv.ClientURL) {
			t.Errorf("%s with etcd stopped: %v; want EUNAVAILABLE naming %s", op, err, srv.ClientURL)
		}
	}
	start := time.Now()
	_, err = Open(t.Context(), Config{Endpoints: []string{srv.ClientURL}, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), srv.ClientURL) {
		t.Errorf("Open with etcd stopped: %v; want an error naming %s", err, srv.ClientURL)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open with etcd stopped took %s", d)
	}
	t.Logf("Open with etcd stopped: %v", err)

	srv.Start()
	deadline := time.Now().Add(10 * time.Second)
	for s.Ping(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not reconnect after etcd came back: %v", s.Ping(t.Context()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := is.CreateInstance(t.Context(), storetest.FullInstance("x")); err != nil {
		t.Errorf("CreateInstance after etcd came back: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// TestClusterSeed: every store on a prefix gets the same seed, made once;
// another prefix has its own.
func TestClusterSeed(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b, other := openStore(t, "/seed/", srv), openStore(t, "/seed/", srv), openStore(t, "/seed2/", srv)
	sa, err := a.ClusterSeed(t.Context())
	if err != nil || len(sa) < 32 {
		t.Fatalf("ClusterSeed = %q, %v", sa, err)
	}
	sb, err := b.ClusterSeed(t.Context())
	if err != nil || string(sb) != string(sa) {
		t.Errorf("the second store's seed %q, %v; want %q", sb, err, sa)
	}
	if so, _ := other.ClusterSeed(t.Context()); string(so) == string(sa) {
		t.Error("another prefix has the same seed")
	}
}

// TestLastListWhileAway: with etcd stopped, FindInstances answers the last
// list it read (copies), and Revision stays that list's.
func TestLastListWhileAway(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := Open(t.Context(), Config{Endpoints: []string{srv.ClientURL}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	is := s.Instances()
	if err := is.CreateInstance(t.Context(), storetest.FullInstance("kept")); err != nil {
		t.Fatal(err)
	}
	before, err := is.FindInstances(t.Context())
	if err != nil || len(before) != 1 {
		t.Fatalf("FindInstances: %d, %v", len(before), err)
	}
	rev := is.Revision()
	before[0].Name = "changed by the caller"
	srv.Stop()
	got, err := is.FindInstances(t.Context())
	if err != nil || len(got) != 1 || got[0].Name != "kept" {
		t.Fatalf("FindInstances with etcd stopped = %v, %v; want the last list", names(got), err)
	}
	if is.Revision() != rev {
		t.Errorf("Revision moved from %d to %d without a list", rev, is.Revision())
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := is.FindInstances(canceled); err == nil {
		t.Error("FindInstances with a canceled context answered")
	}
}

func names(insts []*ec2.Instance) []string {
	var out []string
	for _, inst := range insts {
		out = append(out, inst.Name)
	}
	return out
}
