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
// its name (and marks it running again) in one partial update, so that a
// change made meanwhile by someone else is kept. The hook calls it through
// the admin API, md_server's /instance-upload directly on the registry.
func Register(ctx context.Context, svc ec2.InstanceService, d *Domain) error {
	u := d.Update()
	u.Tags = append(u.Tags, ec2.TagEdit{Key: StateTag, Remove: true})
	_, err := svc.UpdateInstance(ctx, d.Spec.Name, u)
	if ec2.ErrorCode(err) != ec2.ENOTFOUND {
		return err
	}
	_, err = svc.AddInstance(ctx, d.Spec)
	if ec2.ErrorCode(err) == ec2.ECONFLICT {
		// Perhaps added by someone else since the update: update it then.
		if _, uerr := svc.UpdateInstance(ctx, d.Spec.Name, u); ec2.ErrorCode(uerr) != ec2.ENOTFOUND {
			return uerr
		}
	}
	return err
}

// MarkStopped tags the named instance stopped; an instance that is not
// registered is not ours and is left alone.
func MarkStopped(ctx context.Context, svc ec2.InstanceService, name string) error {
	_, err := svc.UpdateInstance(ctx, name, ec2.InstanceUpdate{Tags: []ec2.TagEdit{{Key: StateTag, Value: Stopped}}})
	if ec2.ErrorCode(err) == ec2.ENOTFOUND {
		return nil
	}
	return err
}
