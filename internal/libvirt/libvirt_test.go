package libvirt

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

const (
	testUUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
	testID   = "i-04fbe0879f5844d57" // "i-0" + sha256(testUUID)[:8]
	testMAC  = "aa:bb:cc:dd:ee:ff"
)

// testDomain returns the domain XML of libvirt's test driver: from virsh
// when it is installed (and then it must equal the copy in testdata), else
// from the copy.
func testDomain(t testing.TB) string {
	t.Helper()
	saved, err := os.ReadFile("testdata/test-domain.xml")
	if err != nil {
		t.Fatal(err)
	}
	if path, err := exec.LookPath("virsh"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, "-c", "test:///default", "dumpxml", "test").Output()
		if err != nil {
			t.Fatalf("virsh dumpxml: %v", err)
		}
		if !bytes.Equal(out, saved) {
			t.Logf("virsh output differs from testdata/test-domain.xml; using virsh's:\n%s", out)
		}
		return string(out)
	}
	return string(saved)
}

// withMetadata inserts a <metadata> element holding body after <uuid>.
func withMetadata(t testing.TB, doc, body string) string {
	t.Helper()
	i := strings.Index(doc, "</uuid>")
	if i < 0 {
		t.Fatal("no </uuid> in the test domain")
	}
	i += len("</uuid>")
	return doc[:i] + "\n  <metadata>\n" + body + "\n  </metadata>" + doc[i:]
}

func imdsBlock(children string) string {
	return `    <imds:instance xmlns:imds="https://imds.dev/libvirt/1">` + children + `</imds:instance>`
}

// withInterface inserts an interface before the existing one.
func withInterface(t testing.TB, doc, iface string) string {
	t.Helper()
	i := strings.Index(doc, "<interface")
	if i < 0 {
		t.Fatal("no <interface> in the test domain")
	}
	return doc[:i] + iface + "\n    " + doc[i:]
}

func parse(t testing.TB, doc string, opt Options) *ec2.Instance {
	t.Helper()
	spec, err := ParseDomain(strings.NewReader(doc), opt)
	if err != nil {
		t.Fatalf("ParseDomain: %v", err)
	}
	return spec
}

func TestParseDomainTestDriver(t *testing.T) {
	doc := testDomain(t)
	for _, network := range []string{"", "default"} {
		spec := parse(t, doc, Options{Network: network})
		want := ec2.NewDefaultInstance()
		want.Name = "test"
		want.ID = testID
		want.Interfaces = []ec2.NetworkInterface{{MAC: testMAC}}
		want.MatchMAC = true
		if !reflect.DeepEqual(spec, want) {
			t.Errorf("network %q:\n got %+v\nwant %+v", network, spec, want)
		}
	}
	d, err := Parse(strings.NewReader(doc), Options{Network: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if d.UUID != testUUID || d.Network != "default" {
		t.Errorf("UUID %q network %q", d.UUID, d.Network)
	}
}

func TestInstanceIDStable(t *testing.T) {
	for _, u := range []string{testUUID, strings.ToUpper(testUUID), strings.ReplaceAll(testUUID, "-", ""), " " + testUUID + "\n"} {
		for range 3 {
			id, err := InstanceID(u)
			if err != nil || id != testID {
				t.Errorf("InstanceID(%q) = %q, %v; want %s", u, id, err, testID)
			}
		}
	}
	other, _ := InstanceID("00000000-0000-0000-0000-000000000001")
	if other == testID || len(other) != len(testID) {
		t.Errorf("other UUID gave %q", other)
	}
	doc := testDomain(t)
	upper := strings.Replace(doc, testUUID, strings.ToUpper(testUUID), 1)
	if id := parse(t, upper, Options{}).ID; id != testID {
		t.Errorf("upper-case UUID gave %s", id)
	}
	for _, bad := range []string{"", "6695eb01", testUUID + "00", strings.Replace(testUUID, "6", "g", 1)} {
		if _, err := InstanceID(bad); err == nil {
			t.Errorf("InstanceID(%q) succeeded", bad)
		}
	}
}

func TestParseDomainOverridesAndNetworks(t *testing.T) {
	doc := withMetadata(t, testDomain(t), `    <other:thing xmlns:other="https://example.com/x"><other:role>ignored</other:role></other:thing>
`+imdsBlock(`
      <imds:role>web-role</imds:role>
      <imds:user-data>#cloud-config
hostname: test
</imds:user-data>
      <imds:tag key="env">dev</imds:tag>
      <imds:tag key="Name">web 1</imds:tag>
      <imds:instance-type>t3.small</imds:instance-type>
      <imds:region>eu-west-1</imds:region>
      <imds:availability-zone>eu-west-1b</imds:availability-zone>
      <imds:imdsv2>required</imds:imdsv2>
      <imds:public-key name="alice">ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5fakekeyfortestsonly alice@example</imds:public-key>
      <imds:public-key name="bob">ecdsa-sha2-nistp256 AAAAE2fake bob</imds:public-key>
      <imds:ip>192.168.122.10</imds:ip>
      <imds:ip>fd00:0::10</imds:ip>
    `))
	doc = withInterface(t, doc, `<interface type='network'>
      <mac address='52:54:00:AB:CD:EF'/>
      <source network='isolated'/>
    </interface>`)

	spec := parse(t, doc, Options{Network: "default"})
	want := &ec2.Instance{
		Name:             "test",
		ID:               testID,
		Role:             &ec2.Role{Name: "web-role"},
		UserData:         []byte("#cloud-config\nhostname: test\n"),
		Tags:             []ec2.Tag{{Key: "env", Value: "dev"}, {Key: "Name", Value: "web 1"}},
		InstanceType:     "t3.small",
		Region:           "eu-west-1",
		AvailabilityZone: "eu-west-1b",
		Metadata:         ec2.MetadataOptions{HTTPTokens: "required"},
		PublicKeys: []ec2.PublicKey{
			{Name: "alice", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5fakekeyfortestsonly alice@example"},
			{Name: "bob", Key: "ecdsa-sha2-nistp256 AAAAE2fake bob"},
		},
		SourceAddrs: []string{"192.168.122.10", "fd00::10"},
		Interfaces:  []ec2.NetworkInterface{{MAC: testMAC}},
		MatchMAC:    true,
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("\n got %+v\nwant %+v", spec, want)
	}

	// The other network's interface, and the first one without a network.
	if mac := parse(t, doc, Options{Network: "isolated"}).Interfaces[0].MAC; mac != "52:54:00:ab:cd:ef" {
		t.Errorf("isolated: MAC %s", mac)
	}
	if mac := parse(t, doc, Options{}).Interfaces[0].MAC; mac != "52:54:00:ab:cd:ef" {
		t.Errorf("first: MAC %s", mac)
	}
	_, err := ParseDomain(strings.NewReader(doc), Options{Network: "nope"})
	if err == nil || !strings.Contains(err.Error(), `no <interface> on libvirt network "nope" (interfaces: isolated, default)`) {
		t.Errorf("unknown network: %v", err)
	}

	// Base64 user data and an empty role (no instance profile).
	b64 := withMetadata(t, testDomain(t), imdsBlock(`<imds:user-data encoding="base64">
	  AAEC/w==
	</imds:user-data><imds:role/>`))
	spec = parse(t, b64, Options{})
	if !bytes.Equal(spec.UserData, []byte{0, 1, 2, 255}) || spec.Role != nil {
		t.Errorf("base64: user data %v role %v", spec.UserData, spec.Role)
	}
}

func TestApply(t *testing.T) {
	existing := ec2.NewDefaultInstance()
	existing.Name = "test"
	existing.ID = testID
	existing.InstanceType = "m5.large"
	existing.Role = &ec2.Role{Name: "kept-role"}
	existing.Tags = []ec2.Tag{{Key: "imds:state", Value: "stopped"}, {Key: "env", Value: "old"}}
	existing.Interfaces = []ec2.NetworkInterface{{MAC: "02:00:00:00:00:01", PrivateIPv4s: []string{"10.0.0.5"}}}
	existing.AvailabilityZone = "us-east-1c"

	doc := withMetadata(t, testDomain(t), imdsBlock(`<imds:tag key="env">dev</imds:tag><imds:region>eu-west-1</imds:region><imds:imdsv2>required</imds:imdsv2>`))
	d, err := Parse(strings.NewReader(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Apply(existing)
	if existing.InstanceType != "m5.large" || existing.Role == nil || existing.Role.Name != "kept-role" {
		t.Errorf("fields the XML does not set changed: %+v", existing)
	}
	if existing.Interfaces[0].MAC != testMAC || !existing.MatchMAC || existing.Interfaces[0].PrivateIPv4s[0] != "10.0.0.5" {
		t.Errorf("interface %+v MatchMAC %v", existing.Interfaces, existing.MatchMAC)
	}
	wantTags := []ec2.Tag{{Key: "imds:state", Value: "stopped"}, {Key: "env", Value: "dev"}}
	if !reflect.DeepEqual(existing.Tags, wantTags) {
		t.Errorf("tags %v", existing.Tags)
	}
	if existing.Region != "eu-west-1" || existing.AvailabilityZone != "" || existing.Metadata.HTTPTokens != "required" {
		t.Errorf("region %q zone %q imdsv2 %q", existing.Region, existing.AvailabilityZone, existing.Metadata.HTTPTokens)
	}
	empty := &ec2.Instance{Name: "x"}
	d.Apply(empty)
	if len(empty.Interfaces) != 1 || empty.Interfaces[0].MAC != testMAC || empty.ID != testID || empty.Name != "test" {
		t.Errorf("applied to an empty spec: %+v", empty)
	}
}

// TestPinTo: the hook pins a VM to the host it runs on, in a new spec and
// in the update of one registered before (a migrated VM follows its
// hypervisor); a host named in the metadata block wins, "" unpins.
func TestPinTo(t *testing.T) {
	for _, tt := range []struct {
		name, block, pin, want string
	}{
		{"this host", "", "hv-2", "hv-2"},
		{"no host name", "", "", ""},
		{"block names a host", `<imds:host>hv-9</imds:host>`, "hv-2", "hv-9"},
		{"block unpins", `<imds:host></imds:host>`, "hv-2", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := testDomain(t)
			if tt.block != "" {
				doc = withMetadata(t, doc, imdsBlock(tt.block))
			}
			d, err := Parse(strings.NewReader(doc), Options{})
			if err != nil {
				t.Fatal(err)
			}
			d.PinTo(tt.pin)
			if d.Spec.Host != tt.want {
				t.Errorf("spec host %q, want %q", d.Spec.Host, tt.want)
			}
			existing := &ec2.Instance{Name: "test", Host: "hv-1"}
			d.Apply(existing)
			want := tt.want
			if tt.pin == "" && tt.block == "" {
				want = "hv-1" // nothing to pin to: the registered host stays
			}
			if existing.Host != want {
				t.Errorf("updated host %q, want %q", existing.Host, want)
			}
		})
	}
}

func TestParseDomainErrors(t *testing.T) {
	base := testDomain(t)
	meta := func(children string) string { return withMetadata(t, base, imdsBlock(children)) }
	deep := strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000)
	big := strings.Replace(base, "</devices>", "</devices>\n<description>"+strings.Repeat("x", 2<<20)+"</description>", 1)
	many := strings.Replace(base, "</devices>", "</devices>\n"+strings.Repeat("<x/>", MaxElements+1), 1)
	tests := []struct {
		name, doc, want string
	}{
		{"billion laughs", `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain><name>&lol3;</name></domain>`, "domain XML: line 2: DTDs are not allowed"},
		{"external entity", `<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<domain><name>&x;</name></domain>`, "DTDs are not allowed"},
		{"undeclared entity", strings.Replace(base, "<name>test", "<name>&x;", 1), "domain XML: line 2: invalid character entity &x;"},
		{"2 MiB", big, "domain XML larger than 1 MiB"},
		{"10000 deep", deep, "domain XML: line 1: nested deeper than 64 elements"},
		{"too many elements", many, "more than 100000 elements"},
		{"truncated", base[:len(base)/2], "truncated document"},
		{"truncated tag", base[:strings.Index(base, "<devices>")+4], "truncated document"},
		{"not XML", "this is not XML at all\n", "text outside the root element (not XML?)"},
		{"binary", "\x00\x01\x02", "domain XML: line 1:"},
		{"empty", "", "empty document (no <domain> element)"},
		{"other root", "<network><name>default</name></network>", "the root element is <network>, not <domain>"},
		{"two roots", base + base, "more than one root element"},
		{"mismatched", "<domain><name>x</uuid></domain>", "domain XML: line 1: element <name> closed by </uuid>"},
		{"missing name", strings.Replace(base, "<name>test</name>", "", 1), "domain XML: missing <name>"},
		{"empty name", strings.Replace(base, "<name>test</name>", "<name> </name>", 1), "domain XML: missing <name>"},
		{"bad name", strings.Replace(base, "<name>test</name>", "<name>a b</name>", 1), `domain XML: line 2: <name> "a b" cannot name an instance`},
		{"missing uuid", strings.Replace(base, "<uuid>"+testUUID+"</uuid>", "", 1), "domain XML: missing <uuid>"},
		{"bad uuid", strings.Replace(base, testUUID, "not-a-uuid", 1), `domain XML: line 3: <uuid> "not-a-uuid" is not a UUID`},
		{"no interface", base[:strings.Index(base, "<interface")] + base[strings.Index(base, "</interface>")+len("</interface>"):], "domain XML: missing <interface>"},
		{"no mac", strings.Replace(base, "<mac address='aa:bb:cc:dd:ee:ff'/>", "", 1), "<interface> has no <mac address=...>"},
		{"bad mac", strings.Replace(base, testMAC, "aa:bb:cc:dd:ee", 1), `<mac address="aa:bb:cc:dd:ee"> is not a MAC address`},
		{"long mac", strings.Replace(base, testMAC, "aa:bb:cc:dd:ee:ff:00:11", 1), "is not a MAC address"},
		{"bad imdsv2", meta(`<imds:imdsv2>sometimes</imds:imdsv2>`), `imds <imdsv2>: must be optional or required, got "sometimes"`},
		{"empty tag key", meta(`<imds:tag key="">v</imds:tag>`), "imds <tag>: needs a non-empty key attribute"},
		{"no tag key", meta(`<imds:tag>v</imds:tag>`), "imds <tag>: needs a non-empty key attribute"},
		{"duplicate tag", meta(`<imds:tag key="a">1</imds:tag><imds:tag key="a">2</imds:tag>`), `imds <tag>: duplicate key "a"`},
		{"bad ip", meta(`<imds:ip>10.0.0.300</imds:ip>`), `imds <ip>: "10.0.0.300" is not an IP address`},
		{"zoned ip", meta(`<imds:ip>fe80::1%eth0</imds:ip>`), "is not an IP address"},
		{"bad key", meta(`<imds:public-key name="a">hello</imds:public-key>`), "imds <public-key>: \"a\" must be one OpenSSH public key line"},
		{"unnamed key", meta(`<imds:public-key>ssh-ed25519 AAAA</imds:public-key>`), "imds <public-key>: needs a name attribute"},
		{"bad base64", meta(`<imds:user-data encoding="base64">!!!</imds:user-data>`), "imds <user-data>: not valid base64"},
		{"bad encoding", meta(`<imds:user-data encoding="gzip">x</imds:user-data>`), `encoding must be base64 or text, got "gzip"`},
		{"empty region", meta(`<imds:region></imds:region>`), "imds <region>: must look like eu-west-1"},
		{"bad type", meta(`<imds:instance-type>big</imds:instance-type>`), "imds <instance-type>: must look like t3.small"},
		{"zone not in region", meta(`<imds:region>eu-west-1</imds:region><imds:availability-zone>us-east-1a</imds:availability-zone>`), "is not in region"},
		{"twice", meta(`<imds:role>a</imds:role><imds:role>b</imds:role>`), "imds <role>: given twice"},
		{"unknown", meta(`<imds:rol>a</imds:rol>`), "imds <rol>: unknown element"},
		{"bad host", meta(`<imds:host>hv 1</imds:host>`), `imds <host>: must be a host name without / or spaces, got "hv 1"`},
		{"nested", meta(`<imds:role><imds:x/></imds:role>`), "imds <role>: must hold text, not elements"},
		{"foreign", meta(`<role>a</role>`), "imds <role>: element outside the namespace"},
		{"two blocks", withMetadata(t, base, imdsBlock("")+imdsBlock("")), "more than one <instance> block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseDomain(strings.NewReader(tt.doc), Options{Network: "default"})
			if err == nil {
				t.Fatalf("no error; spec %+v", spec)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\nwant it to contain %q", msg, tt.want)
			}
			if strings.ContainsAny(msg, "\r\n") || len(msg) > 400 {
				t.Errorf("error is not one short line: %q", msg)
			}
		})
	}
}

// TestParseDomainReadsAtMostTheLimit checks that an endless input is not
// read to its end.
func TestParseDomainReadsAtMostTheLimit(t *testing.T) {
	r := &countingReader{}
	if _, err := ParseDomain(r, Options{}); err == nil || err.Error() != "domain XML larger than 1 MiB" {
		t.Fatalf("err %v", err)
	}
	if r.n > MaxSize+64<<10 {
		t.Errorf("read %d bytes", r.n)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += len(p)
	return len(p), nil
}

func FuzzParseDomain(f *testing.F) {
	base := testDomain(f)
	f.Add(base)
	f.Add(withMetadata(f, base, imdsBlock(`<imds:role>r</imds:role><imds:tag key="k">v</imds:tag><imds:user-data encoding="base64">AA==</imds:user-data><imds:ip>10.0.0.1</imds:ip>`)))
	f.Add(`<!DOCTYPE d [<!ENTITY x "y">]><domain/>`)
	f.Add("<domain><name>x</name><uuid>" + testUUID + "</uuid><devices><interface><mac address='02:00:00:00:00:01'/></interface></devices></domain>")
	f.Add(base[:100])
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := Parse(strings.NewReader(doc), Options{Network: "default"})
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || msg == "" {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		s := d.Spec
		if s.Name == "" || len(s.Interfaces) != 1 || !s.MatchMAC || !strings.HasPrefix(s.ID, "i-0") || len(s.ID) != 19 {
			t.Fatalf("bad spec %+v", s)
		}
		d.Apply(ec2.NewDefaultInstance())
	})
}
