package imds

import (
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

func testTree(t testing.TB) *node {
	inst := ec2.NewDefaultInstance()
	inst.PublicKeys = []ec2.PublicKey{{Name: "k", Key: "ssh-ed25519 AAAA k"}}
	inst.Tags = []ec2.Tag{{Key: "Name", Value: "x"}}
	inst.Metadata.TagsInMetadata = true
	inst.UserData = []byte("hi")
	ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("fuzz")})
	s := NewServer()
	c, err := s.compile(inst, newSettings(Settings{}))
	if err != nil {
		t.Fatal(err)
	}
	return c.root
}

func TestResolve(t *testing.T) {
	root := testTree(t)
	for _, tt := range []struct {
		path, version string
		wantLeaf      string // "" means a directory; "-" means not found
	}{
		{"meta-data/services/domain", latest, "amazonaws.com"},
		{"meta-data//services///domain/", latest, "amazonaws.com"},
		{"/meta-data/services/domain", latest, "amazonaws.com"},
		{"meta-data/services", latest, ""},
		{"meta-data/public-keys/0/openssh-key", latest, "ssh-ed25519 AAAA k"},
		{"meta-data/public-keys/0=k", latest, "-"},
		{"meta-data/tags/instance/Name", latest, "x"},
		{"meta-data/tags/instance/Name", "2021-01-03", "-"},
		{"meta-data/services/partition", "2014-02-25", "-"},
		{"meta-data/services/domain", "2014-02-25", "amazonaws.com"},
		{"meta-data/service", latest, "-"},
		{"meta-data/services/domain/x", latest, "-"},
		{"user-data", latest, "hi"},
		{"..", latest, "-"},
	} {
		n := resolve(root, tt.path, tt.version)
		switch {
		case tt.wantLeaf == "-" && n != nil:
			t.Errorf("resolve(%q, %s) found %q, want none", tt.path, tt.version, n.name)
		case tt.wantLeaf == "-":
		case n == nil:
			t.Errorf("resolve(%q, %s)=nil, want %q", tt.path, tt.version, tt.wantLeaf)
		case tt.wantLeaf == "" && !n.isDir():
			t.Errorf("resolve(%q, %s) is a leaf, want a directory", tt.path, tt.version)
		case tt.wantLeaf != "" && string(n.value) != tt.wantLeaf:
			t.Errorf("resolve(%q, %s)=%q, want %q", tt.path, tt.version, n.value, tt.wantLeaf)
		}
	}
}

// FuzzResolve checks the resolver never panics, ignores empty segments, and
// only ever returns nodes whose listings name existing children.
func FuzzResolve(f *testing.F) {
	root := testTree(f)
	for _, s := range []string{"meta-data/", "meta-data//iam/info", "dynamic/instance-identity", "meta-data/public-keys/0/",
		"user-data/", "meta-data/network/interfaces/macs/", "%2e%2e", "meta-data/\x00"} {
		f.Add(s, "latest")
		f.Add(s, "2009-04-04")
	}
	f.Fuzz(func(t *testing.T, path, version string) {
		n := resolve(root, path, version)
		doubled := strings.ReplaceAll(path, "/", "//") + "/"
		if m := resolve(root, doubled, version); m != n {
			t.Fatalf("resolve(%q) and resolve(%q) differ", path, doubled)
		}
		if n == nil || !n.isDir() {
			return
		}
		for _, e := range strings.Split(string(n.listFor(version)), "\n") {
			if e == "" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(e, "/"), "=")
			if n.child(name, version) == nil {
				t.Fatalf("listing of %q names %q, which does not resolve", path, e)
			}
		}
	})
}
