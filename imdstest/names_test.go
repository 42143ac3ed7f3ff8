package imdstest

import (
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// The public names repeat the domain's, so that godoc shows their values.
func TestNamesMatchTheDomain(t *testing.T) {
	if DefaultInstanceName != ec2.DefaultInstanceName || DefaultRoleName != ec2.DefaultRoleName {
		t.Errorf("DefaultInstanceName %q, DefaultRoleName %q; the server uses %q and %q",
			DefaultInstanceName, DefaultRoleName, ec2.DefaultInstanceName, ec2.DefaultRoleName)
	}
}
