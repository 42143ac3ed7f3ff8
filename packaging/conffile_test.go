package packaging

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// example marks a commented-out config line ("#key: ..." or "#  key: ..."),
// as opposed to prose ("# text").
var example = regexp.MustCompile(`^#(\S|  )`)

// TestConffile loads the package's /etc/imds/imds.yaml with the real
// (strict) parser, as shipped and with its examples uncommented, so that
// neither the defaults nor the examples can drift from the decoder.
func TestConffile(t *testing.T) {
	b, err := os.ReadFile("imds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("imds.yaml", b, "/etc/imds")
	if err != nil {
		t.Fatalf("the conffile as shipped: %v", err)
	}
	if f.DataDir != "/var/lib/imds" || f.Admin.Socket != "/run/imds/admin.sock" || f.Admin.SocketGroup != "imds" || strings.Join(f.Listen, ",") != "127.0.0.1:1338" {
		t.Errorf("conffile defaults: data_dir %q, admin %+v, listen %v; want the host service's", f.DataDir, f.Admin, f.Listen)
	}
	// instance: and instances: exclude each other: uncomment all examples
	// but one of the two each time.
	for _, skip := range []string{"#instance:", "#instances:"} {
		var out []string
		for _, para := range strings.Split(string(b), "\n\n") {
			lines := strings.Split(para, "\n")
			first := ""
			for _, l := range lines {
				if example.MatchString(l) {
					first = l
					break
				}
			}
			if first == skip {
				out = append(out, para)
				continue
			}
			for i, l := range lines {
				if example.MatchString(l) {
					lines[i] = l[1:]
				}
			}
			out = append(out, strings.Join(lines, "\n"))
		}
		doc := strings.Join(out, "\n\n")
		f, err := config.Parse("imds.yaml (examples uncommented but "+skip+")", []byte(doc), "/etc/imds")
		if err != nil {
			t.Errorf("%v\n%s", err, doc)
			continue
		}
		if _, err := f.BuildInstances(ec2.DeriveOptions{Seed: []byte("conffile")}); err != nil {
			t.Errorf("examples uncommented but %s: %v", skip, err)
		}
		if f.VMNetwork == nil || f.Templates == nil || len(f.Roles) == 0 {
			t.Errorf("examples uncommented but %s: vm_network, templates or roles missing; the examples did not load", skip)
		}
	}
}
