package etcd

import (
	"fmt"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// TestOverlayStore runs the overlay contract against a real etcd, each
// subtest under a prefix of its own.
func TestOverlayStore(t *testing.T) {
	srv := etcdtest.Start(t)
	n := 0
	storetest.RunOverlays(t, func(t *testing.T) ec2.OverlayStore {
		n++
		return openStore(t, fmt.Sprintf("/overlays-%d/", n), srv).Instances()
	})
}
