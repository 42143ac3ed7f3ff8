package etcd

import (
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

func TestHosts(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := t.Context()
	a, b := openStore(t, "/hosts/", srv), openStore(t, "/hosts/", srv)
	pa, err := a.Announce(ctx, ec2.Host{Name: "hv-a", Listen: []string{"127.0.0.1:1338"}, Version: "test", Started: time.Now()}, 2*time.Second, nil)
	if err != nil {
		t.Fatalf("Announce hv-a: %v", err)
	}
	defer pa.Close(ctx)
	start := time.Now()
	if _, err := b.Announce(ctx, ec2.Host{Name: "hv-a"}, 2*time.Second, nil); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Fatalf("a second live hv-a: %v, want ECONFLICT", err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("a second live hv-a was refused after %s, before the TTL could have run out", d)
	}
	if _, err := b.Announce(ctx, ec2.Host{Name: "bad/name"}, 0, nil); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("a name with a slash: %v, want EINVALID", err)
	}
	pb, err := b.Announce(ctx, ec2.Host{Name: "hv-b"}, 2*time.Second, nil)
	if err != nil {
		t.Fatalf("Announce hv-b: %v", err)
	}
	list, err := Hosts{Store: a, Self: pa}.ListHosts(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "hv-a" || list[1].Name != "hv-b" {
		t.Fatalf("ListHosts = %+v, %v; want hv-a and hv-b", list, err)
	}
	if !list[0].Self || list[1].Self || list[0].TTL <= 0 || list[0].Lease == "" || list[0].Listen[0] != "127.0.0.1:1338" {
		t.Errorf("ListHosts = %+v", list)
	}
	// Renewed: still listed well after the TTL.
	time.Sleep(3 * time.Second)
	if list, _ := (Hosts{Store: a}).ListHosts(ctx); len(list) != 2 {
		t.Fatalf("after 3 s with a 2 s TTL, %d hosts listed, want 2 (renewed)", len(list))
	}
	// A host that stops without a word (its connection gone) drops out
	// when its lease runs out; one that closes drops out at once.
	b.client.Close()
	eventually(t, "hv-b's lease to run out", func() bool {
		list, _ := (Hosts{Store: a}).ListHosts(ctx)
		return len(list) == 1
	})
	defer pb.Close(ctx) // its connection is gone: only stops its goroutine
	if err := pa.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if list, _ := (Hosts{Store: a}).ListHosts(ctx); len(list) != 0 {
		t.Errorf("after Close %d hosts listed", len(list))
	}
	// The name is free again.
	p, err := a.Announce(ctx, ec2.Host{Name: "hv-a"}, 2*time.Second, nil)
	if err != nil {
		t.Fatalf("Announce hv-a again: %v", err)
	}
	p.Close(ctx)
}
