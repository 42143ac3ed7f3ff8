package registry

import (
	"log/slog"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// TestReloadFollowsAnotherWriter: two registries over one store, as two
// hosts over etcd. What one writes, the other serves after Reload, whole;
// an instance removed by the other loses its events here too.
func TestReloadFollowsAnotherWriter(t *testing.T) {
	ctx := t.Context()
	a, _, db := openRegistryDB(t, "")
	b := New(db.Instances(), opt)
	b.Logger = slog.New(slog.DiscardHandler)
	for _, r := range []*Registry{a, b} {
		if err := r.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.AddInstance(ctx, &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"10.0.0.5"}}); err != nil {
		t.Fatal(err)
	}
	if b.Has("vm-1") {
		t.Fatal("b serves vm-1 before Reload")
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := locate(b, "10.0.0.5")
	if err != nil || got.Name != "vm-1" {
		t.Fatalf("b after Reload locates 10.0.0.5 as %v, %v; want vm-1", got, err)
	}
	if _, err := b.TriggerEvent(ctx, "vm-1", ec2.EventRequest{Type: "spot"}); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveInstance(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Has("vm-1") {
		t.Error("b serves vm-1 after it was removed and Reload")
	}
	if _, err := a.AddInstance(ctx, &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"10.0.0.5"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if inst, _ := b.GetInstance(ctx, "vm-1"); inst == nil || inst.Events.Spot != nil {
		t.Errorf("a new vm-1 inherited the spot notice of the removed one: %+v", inst)
	}
}
