package registry

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// TestUpdateInstanceKeepsConcurrentChanges has many writers each set their
// own tag at once: with UpdateInstance none is lost, as a get-then-set would
// lose some.
func TestUpdateInstanceKeepsConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("cfg", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddInstance(ctx, spec("vm-1", "10.0.1.5")); err != nil {
		t.Fatal(err)
	}
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.UpdateInstance(ctx, "vm-1", ec2.InstanceUpdate{Tags: []ec2.TagEdit{{Key: fmt.Sprint("k", i), Value: "v"}}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	spec, err := r.GetInstanceSpec(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Tags) != writers {
		t.Errorf("%d tags after %d concurrent updates, want all: %v", len(spec.Tags), writers, spec.Tags)
	}
	for _, tt := range []struct {
		name, instance string
		u              ec2.InstanceUpdate
		wantCode       string
	}{
		{"unknown", "nope", ec2.InstanceUpdate{InstanceType: ec2.Ptr("t3.small")}, ec2.ENOTFOUND},
		{"config instance", "cfg", ec2.InstanceUpdate{InstanceType: ec2.Ptr("t3.small")}, ec2.EFORBIDDEN},
		{"invalid result", "vm-1", ec2.InstanceUpdate{HTTPTokens: ec2.Ptr("always")}, ec2.EINVALID},
		{"empty tag key", "vm-1", ec2.InstanceUpdate{Tags: []ec2.TagEdit{{Value: "x"}}}, ec2.EINVALID},
		{"taken address", "vm-1", ec2.InstanceUpdate{SourceAddrs: ec2.Ptr([]string{"10.0.0.2"})}, ec2.ECONFLICT},
	} {
		if _, err := r.UpdateInstance(ctx, tt.instance, tt.u); ec2.ErrorCode(err) != tt.wantCode {
			t.Errorf("%s: err=%v, want code %s", tt.name, err, tt.wantCode)
		}
	}
	if after, _ := r.GetInstanceSpec(ctx, "vm-1"); len(after.Tags) != writers || after.Metadata.HTTPTokens == "always" {
		t.Errorf("a refused update changed the spec: %+v", after)
	}
}
