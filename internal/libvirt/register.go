package libvirt

import (
	"context"

	"github.com/imdsdev/imds/internal/ec2"
)

// The hook marks a stopped VM with this tag: an instance has no state of its
// own yet, and the stopped VM stays registered so that its name, ID and
// addresses stay reserved. Starting the VM again removes the tag.
const (
	StateTag = "imds:state"
	Stopped  = "stopped"
)

// Register adds the domain's instance, or updates the one registered under
// its name (and marks it running again). The hook calls it through the
// admin API, md_server's /instance-upload directly on the registry.
func Register(ctx context.Context, svc ec2.InstanceService, d *Domain) error {
	spec, err := svc.GetInstanceSpec(ctx, d.Spec.Name)
	switch {
	case ec2.ErrorCode(err) == ec2.ENOTFOUND:
		_, err = svc.AddInstance(ctx, d.Spec)
		return err
	case err != nil:
		return err
	}
	d.Apply(spec)
	spec.Tags = removeTag(spec.Tags, StateTag)
	_, err = svc.SetInstance(ctx, spec)
	return err
}

// MarkStopped tags the named instance stopped; an instance that is not
// registered is not ours and is left alone.
func MarkStopped(ctx context.Context, svc ec2.InstanceService, name string) error {
	spec, err := svc.GetInstanceSpec(ctx, name)
	if ec2.ErrorCode(err) == ec2.ENOTFOUND {
		return nil
	}
	if err != nil {
		return err
	}
	for _, t := range spec.Tags {
		if t.Key == StateTag && t.Value == Stopped {
			return nil
		}
	}
	spec.Tags = setTag(spec.Tags, StateTag, Stopped)
	_, err = svc.SetInstance(ctx, spec)
	return err
}

func removeTag(tags []ec2.Tag, key string) []ec2.Tag {
	out := tags[:0]
	for _, t := range tags {
		if t.Key != key {
			out = append(out, t)
		}
	}
	return out
}
