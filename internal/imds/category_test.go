package imds

import (
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

func TestCategory(t *testing.T) {
	for _, tc := range []struct {
		path    string
		listing bool
		want    string
	}{
		{"/latest/api/token", false, ec2.CategoryToken},
		{"/latest/api/token/", false, ec2.CategoryToken},
		{"/", true, ec2.CategoryListing},
		{"/latest/meta-data/", true, ec2.CategoryListing},
		{"/latest/meta-data/iam/security-credentials/", true, ec2.CategoryListing},
		{"/latest/meta-data/iam/security-credentials/", false, ec2.CategoryListing}, // refused before it was resolved
		{"/latest/meta-data/", false, ec2.CategoryListing},
		{"/latest/meta-data/iam/security-credentials/web", false, ec2.CategoryCredentials},
		{"/2021-07-15/meta-data/iam/security-credentials/web", false, ec2.CategoryCredentials},
		{"/latest//meta-data/iam/security-credentials/web", false, ec2.CategoryCredentials},
		{"/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance", false, ec2.CategoryCredentials},
		{"/latest/dynamic/instance-identity/document", false, ec2.CategoryIdentity},
		{"/latest/dynamic/instance-identity/pkcs7", false, ec2.CategoryIdentity},
		{"/latest/user-data", false, ec2.CategoryUserData},
		{"/latest/meta-data/instance-id", false, ec2.CategoryOther},
		{"/latest/meta-data/no-such-thing", false, ec2.CategoryOther},
		{"", false, ec2.CategoryOther},
		{"/latest/user-data/", false, ec2.CategoryListing},
	} {
		if got := category(tc.path, tc.listing); got != tc.want {
			t.Errorf("category(%q, %v) = %q, want %q", tc.path, tc.listing, got, tc.want)
		}
	}
}
