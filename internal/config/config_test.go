package config

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imdsdev/imds/internal/ec2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// opt are the derive options of every test: a fixed seed and launch time make
// derived values reproducible.
var opt = ec2.DeriveOptions{
	Seed:   []byte("config-test-machine-id"),
	Launch: time.Date(2024, 6, 1, 8, 30, 0, 0, time.UTC), // fixed instant: a launch time that is only derived from
}

func defaultInstance(t *testing.T) *ec2.Instance {
	t.Helper()
	inst := ec2.NewDefaultInstance()
	ec2.Derive(inst, opt)
	inst.Origin = ec2.OriginConfig
	if errs := inst.Validate(); len(errs) > 0 {
		t.Fatalf("the default instance is invalid: %v", errs)
	}
	return inst
}

// build parses src (as t.yaml, relative paths against testdata) and builds
// its instance, failing the test on any error.
func build(t *testing.T, src string) (*File, *ec2.Instance) {
	t.Helper()
	f, err := Parse("t.yaml", []byte(src), "testdata")
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	inst, err := f.BuildInstance(opt)
	if err != nil {
		t.Fatalf("BuildInstance:\n%v", err)
	}
	return f, inst
}

func TestParseEmptyMeansDefaults(t *testing.T) {
	for _, src := range []string{
		"",
		"# nothing configured yet\n",
		"---\n",
		"~\n",
		"instance:\n",
		"log: {}\ncredentials:\ninstance: ~\n",
	} {
		t.Run(fmt.Sprintf("%q", src), func(t *testing.T) {
			f, inst := build(t, src)
			want := Default()
			if diff := cmp.Diff(want.Listen, f.Listen); diff != "" {
				t.Errorf("Listen (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want.Log, f.Log); diff != "" {
				t.Errorf("Log (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(Credentials{Lifetime: 6 * time.Hour, RotateAfter: time.Hour}, f.Credentials); diff != "" {
				t.Errorf("Credentials (-want +got):\n%s", diff)
			}
			if f.DataDir != "" || f.Instance != nil {
				t.Errorf("DataDir = %q, Instance = %v; want empty", f.DataDir, f.Instance)
			}
			if diff := cmp.Diff(defaultInstance(t), inst); diff != "" {
				t.Errorf("instance (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildInstanceWithoutFile(t *testing.T) {
	for name, f := range map[string]*File{"nil": nil, "Default": Default()} {
		inst, err := f.BuildInstance(opt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(defaultInstance(t), inst); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", name, diff)
		}
	}
}

func TestFullExample(t *testing.T) {
	f, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	accessLog := true
	wantFile := &File{
		Listen:      []string{"127.0.0.1:1338", "[::1]:1338"},
		DataDir:     "/var/lib/imds",
		Log:         Log{Level: "info", Format: "json", AccessLog: &accessLog},
		Credentials: Credentials{Lifetime: 6 * time.Hour, RotateAfter: time.Hour},
	}
	if diff := cmp.Diff(wantFile, f, cmpopts.IgnoreUnexported(File{}), cmpopts.IgnoreFields(File{}, "Instance")); diff != "" {
		t.Errorf("File (-want +got):\n%s", diff)
	}

	got, err := f.BuildInstance(opt)
	if err != nil {
		t.Fatal(err)
	}
	userData, err := os.ReadFile("testdata/user-data.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Derived IDs depend on the seed; check their form, then compare the rest.
	for _, id := range []*string{&got.Interfaces[0].SecurityGroups[1].ID, &got.Interfaces[1].SecurityGroups[0].ID} {
		if !strings.HasPrefix(*id, "sg-0") {
			t.Errorf("derived security group ID %q", *id)
		}
		*id = "(derived)"
	}
	if got.Role == nil || !strings.HasPrefix(got.Role.InstanceProfileID, "AIPA") {
		t.Fatalf("Role = %+v, want a derived AIPA… profile ID", got.Role)
	}
	got.Role.InstanceProfileID = "(derived)"

	want := &ec2.Instance{
		Origin:             ec2.OriginConfig,
		Name:               "web-1",
		ID:                 "i-0a1b2c3d4e5f60718",
		AccountID:          "123456789012",
		Region:             "eu-west-1",
		AvailabilityZone:   "eu-west-1b",
		AvailabilityZoneID: "euw1-az2",
		InstanceType:       "t3.medium",
		Architecture:       "x86_64",
		ImageID:            "ami-0c1c30571d2dae5c9",
		AMIManifestPath:    "(unknown)",
		ReservationID:      "r-0fedcba9876543210",
		Profile:            "default-hvm",
		LifeCycle:          "spot",
		InstanceAction:     "none",
		PendingTime:        time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), // fixed instant: decoded and compared
		Monitoring:         true,
		Partition:          "aws",
		Domain:             "amazonaws.com",
		Hypervisor:         "nitro",
		Placement:          ec2.Placement{GroupName: "web-spread"},
		Interfaces: []ec2.NetworkInterface{
			{
				ID:             "eni-0123456789abcdef0",
				MAC:            "06:5a:1b:2c:3d:4e",
				OwnerID:        "123456789012",
				PrivateIPv4s:   []string{"10.0.1.17", "10.0.1.18"},
				PublicIPv4s:    []string{"198.51.100.23"},
				LocalHostname:  "ip-10-0-1-17.eu-west-1.compute.internal",
				PublicHostname: "ec2-198-51-100-23.eu-west-1.compute.amazonaws.com",
				SecurityGroups: []ec2.SecurityGroup{
					{Name: "web", ID: "sg-0123456789abcdef0"},
					{Name: "ssh-from-bastion", ID: "(derived)"},
				},
				SubnetID:       "subnet-0aa11bb22cc33dd44",
				SubnetIPv4CIDR: "10.0.1.0/24",
				VPCID:          "vpc-0123abcd4567ef890",
				VPCIPv4CIDR:    "10.0.0.0/16",
				VPCIPv4CIDRs:   []string{"10.0.0.0/16"},
			},
			{
				DeviceNumber:   1,
				ID:             "eni-0fedcba9876543210",
				MAC:            "06:5a:1b:2c:3d:4f",
				OwnerID:        "123456789012",
				PrivateIPv4s:   []string{"10.0.2.9"},
				PublicIPv4s:    []string{}, // none, and not derived
				LocalHostname:  "ip-10-0-2-9.eu-west-1.compute.internal",
				SecurityGroups: []ec2.SecurityGroup{{Name: "default", ID: "(derived)"}},
				SubnetID:       "subnet-0bb22cc33dd44ee55",
				SubnetIPv4CIDR: "10.0.2.0/24",
				VPCID:          "vpc-0123abcd4567ef890",
				VPCIPv4CIDR:    "10.0.0.0/16",
				VPCIPv4CIDRs:   []string{"10.0.0.0/16"},
			},
		},
		BlockDevices: []ec2.BlockDevice{{Name: "ami", Device: "/dev/xvda"}, {Name: "root", Device: "/dev/xvda"}, {Name: "ebs1", Device: "sdf"}},
		PublicKeys: []ec2.PublicKey{
			{Name: "deploy", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlcGxveS1rZXktbm90LWZvci1yZWFsLXVzZQ deploy@ci"},
			{Name: "admin", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1mb3ItcmVhbC11c2U admin@example.com"},
		},
		// In file order, not sorted; 4711 as written.
		Tags:     []ec2.Tag{{Key: "Name", Value: "web-1"}, {Key: "env", Value: "staging"}, {Key: "team", Value: "platform"}, {Key: "cost-center", Value: "4711"}},
		UserData: userData,
		Role:     &ec2.Role{Name: "web-server", InstanceProfileName: "web-server-profile", InstanceProfileID: "(derived)"},
		Metadata: ec2.MetadataOptions{
			HTTPTokens:          ec2.TokensRequired,
			HTTPEndpoint:        ec2.EndpointEnabled,
			TagsInMetadata:      true,
			PutResponseHopLimit: 2,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instance (-want +got):\n%s", diff)
	}
}

// TestDocExample keeps the example in the package documentation identical to
// testdata/full.yaml, which TestFullExample proves valid.
func TestDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(src), "// # Example\n")
	if !ok {
		t.Fatal("doc.go has no # Example section")
	}
	var block []string
lines:
	for _, line := range strings.Split(example, "\n") {
		switch {
		case strings.HasPrefix(line, "//\t"):
			block = append(block, strings.TrimPrefix(line, "//\t"))
		case line == "//" && len(block) > 0:
			block = append(block, "")
		case len(block) > 0:
			break lines
		}
	}
	got := strings.TrimRight(strings.Join(block, "\n"), "\n") + "\n"
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("doc.go's example differs from testdata/full.yaml (-file +doc):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown top-level key", "listen: 127.0.0.1:1338\nlisen: 127.0.0.1:80\n",
			"t.yaml:2: lisen: unknown key; did you mean listen?"},
		{"instance key at top level", "region: eu-west-1\n",
			"t.yaml:1: region: unknown key; region belongs under instance:"},
		{"unknown nested key", "log:\n  level: debug\n  colour: true\n",
			"t.yaml:3: log.colour: unknown key"},
		{"misspelt instance key", "instance:\n  regoin: eu-west-1\n  instanceId: i-0123456789abcdef0\n",
			"t.yaml:2: instance.regoin: unknown key; did you mean region?\n" +
				"t.yaml:3: instance.instanceId: unknown key; did you mean instance_id?"},
		{"unknown key in a list item", "instance:\n  network_interfaces:\n    - mac: 06:00:00:00:00:01\n      subnet: subnet-0123456789abcdef0\n",
			"t.yaml:4: instance.network_interfaces[0].subnet: unknown key"},
		{"list where a string is expected", "instance:\n  region:\n    - eu-west-1\n",
			"t.yaml:2: instance.region: must be a string, got a list"},
		{"string where a mapping is expected", "log: debug\n",
			`t.yaml:1: log: must be a mapping, got the string "debug"`},
		{"string where a list is expected", "instance:\n  network_interfaces:\n    - local_ipv4s: 10.0.0.1\n",
			`t.yaml:3: instance.network_interfaces[0].local_ipv4s: must be a list, got the string "10.0.0.1"`},
		{"quoted integer", "instance:\n  hop_limit: \"2\"\n",
			`t.yaml:2: instance.hop_limit: must be an integer, got the string "2"`},
		{"hop limit out of range", "instance:\n  hop_limit: 65\n",
			"t.yaml:2: instance.hop_limit: must be between 1 and 64, got 65"},
		{"negative launch index", "instance:\n  ami_launch_index: -1\n",
			"t.yaml:2: instance.ami_launch_index: must be 0 or more, got -1"},
		{"YAML 1.1 boolean", "log:\n  access_log: yes\n",
			`t.yaml:2: log.access_log: must be true or false, got the string "yes"`},
		{"bad socket group", "admin:\n  socket_group: \"imds users\"\n",
			`t.yaml:2: admin.socket_group: "imds users" is not a group name or number`},
		{"bad log level", "log:\n  level: verbose\n",
			`t.yaml:2: log.level: must be debug, info, warn or error, got "verbose"`},
		{"bad duration", "credentials:\n  lifetime: 6 hours\n",
			`t.yaml:2: credentials.lifetime: must be a duration like 90m or 6h, got "6 hours"`},
		{"duration without unit", "credentials:\n  lifetime: 3600\n",
			`t.yaml:2: credentials.lifetime: must be a duration like 90m or 6h, got "3600"`},
		{"lifetime too short", "credentials:\n  lifetime: 10m\n",
			"t.yaml:2: credentials.lifetime: must be between 20m and 36h, got 10m"},
		{"lifetime too long", "credentials:\n  lifetime: 48h\n",
			"t.yaml:2: credentials.lifetime: must be between 20m and 36h, got 48h"},
		{"rotation after lifetime minus overlap", "credentials:\n  rotate_after: 50m\n  lifetime: 1h\n",
			"t.yaml:2: credentials.rotate_after: must be at most 45m (lifetime 1h minus 15m), got 50m"},
		{"rotation too early", "credentials:\n  rotate_after: 30s\n",
			"t.yaml:2: credentials.rotate_after: must be between 1m and 35h45m, got 30s"},
		{"bad imdsv2", "instance:\n  imdsv2: true\n",
			`t.yaml:2: instance.imdsv2: must be optional or required, got "true"`},
		{"bad http_endpoint", "instance:\n  http_endpoint: off\n",
			`t.yaml:2: instance.http_endpoint: must be enabled or disabled, got "off"`},
		{"bad pending_time", "instance:\n  pending_time: yesterday\n",
			`t.yaml:2: instance.pending_time: must be an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got "yesterday"`},
		{"bad MAC via shorthand", "instance:\n  name: web-1\n  mac: 06:5A:zz:00:00:01\n",
			`t.yaml:3: instance.network_interfaces[0].mac: must be six lower-case hex pairs separated by colons, got "06:5a:zz:00:00:01"`},
		{"bad MAC of a second interface", "instance:\n  network_interfaces:\n    - mac: 06:00:00:00:00:01\n    - device_number: 1\n      mac: 06-00-00-00-00-02\n",
			`t.yaml:5: instance.network_interfaces[1].mac: must be six lower-case hex pairs separated by colons, got "06-00-00-00-00-02"`},
		{"duplicate MAC", "instance:\n  network_interfaces:\n    - mac: 06:00:00:00:00:01\n    - mac: 06:00:00:00:00:01\n",
			"t.yaml:4: instance.network_interfaces[1].mac: duplicate MAC 06:00:00:00:00:01"},
		{"bad CIDR is reported once, on its key", "instance:\n  network_interfaces:\n    - subnet_ipv4_cidr: 10.0.0.0/33\n",
			"t.yaml:3: instance.network_interfaces[0].subnet_ipv4_cidr: \"10.0.0.0/33\" is not an IPv4 CIDR"},
		{"allowed host with a port", "allowed_hosts: [imds, \"imds:1338\"]\n",
			`t.yaml:1: allowed_hosts[1]: must be a host name without port (or "*" for any), got "imds:1338"`},
		{"allowed hosts not a list", "allowed_hosts: {a: b}\n",
			"t.yaml:1: allowed_hosts: must be a list, got a mapping"},
		{"user_data and user_data_file", "instance:\n  user_data: \"#!/bin/sh\\n\"\n  user_data_file: user-data.yaml\n",
			"t.yaml:3: instance.user_data_file: cannot be combined with user_data (line 2); choose one"},
		{"missing user_data_file", "instance:\n  user_data_file: missing.bin\n",
			"t.yaml:2: instance.user_data_file: cannot read " + filepath.Join("testdata", "missing.bin") + ": no such file or directory"},
		{"user data too large", "instance:\n  user_data: " + strings.Repeat("x", 16385) + "\n",
			"t.yaml:2: instance.user_data: is 16385 bytes; EC2 allows at most 16384"},
		{"duplicate key", "instance:\n  region: eu-west-1\n  region: eu-west-2\n",
			"t.yaml:3: instance.region: duplicate key (first at line 2)"},
		{"duplicate top-level section", "log:\n  level: info\nlog:\n  level: debug\n",
			"t.yaml:3: log: duplicate key (first at line 1)"},
		{"duplicate tag", "instance:\n  tags:\n    env: dev\n    env: prod\n",
			"t.yaml:4: instance.tags.env: duplicate key (first at line 3)"},
		{"shorthands with network_interfaces", "instance:\n  mac: 06:00:00:00:00:01\n  network_interfaces:\n    - mac: 06:00:00:00:00:02\n  public_ipv4: \"\"\n",
			"t.yaml:2: instance.mac: cannot be combined with network_interfaces (line 3); set it in network_interfaces[0]\n" +
				"t.yaml:5: instance.public_ipv4: cannot be combined with network_interfaces (line 3); set it in network_interfaces[0]"},
		{"null network interface", "instance:\n  network_interfaces:\n    -\n",
			"t.yaml:3: instance.network_interfaces[0]: must be a mapping, got null; use {} for an interface with derived values"},
		{"security group without a name", "instance:\n  security_groups:\n    - id: sg-0123456789abcdef0\n",
			"t.yaml:3: instance.security_groups[0].name: is required"},
		{"listen addresses", "listen:\n  - 127.0.0.1\n  - localhost:http\n  - :99999\n  - \"[::1]:0\"\n",
			`t.yaml:2: listen[0]: must be host:port like 127.0.0.1:1338, got "127.0.0.1"` + "\n" +
				`t.yaml:3: listen[1]: port must be a number from 0 to 65535, got "http"` + "\n" +
				`t.yaml:4: listen[2]: port must be a number from 0 to 65535, got "99999"`},
		{"listen nothing", "listen: []\n",
			"t.yaml:1: listen: must list at least one address"},
		{"top level is a list", "- listen: 127.0.0.1:1338\n",
			"t.yaml:1: the top level must be a mapping of settings, got a list"},
		{"top level is a string", "hello\n",
			`t.yaml:1: the top level must be a mapping of settings, got the string "hello"`},
		{"second document", "log:\n  level: debug\n---\nlog:\n  level: info\n",
			"t.yaml:3: only one YAML document is allowed, found a second one"},
		{"syntax error", "log:\n  level: info\n   format: json\n",
			"t.yaml:3: invalid YAML: mapping values are not allowed in this context"},
		{"tab indentation", "log:\n\tlevel: info\n",
			"t.yaml:2: invalid YAML: found character that cannot start any token"},
		{"invalid UTF-8", "instance:\n  tags:\n    Name: \"caf\xe9\"\n",
			"t.yaml:3: invalid YAML: invalid trailing UTF-8 octet"},
		{"unknown anchor", "instance:\n  region: *r\n",
			"t.yaml:2: invalid YAML: unknown anchor 'r' referenced"},
		{"non-text key", "? [a, b]\n: c\n",
			"t.yaml:1: keys must be text, got a list"},
		{"tag value not a string", "instance:\n  tags:\n    env: [dev]\n",
			`t.yaml:3: instance.tags: value of "env" must be a string, got a list`},
		{"tag key not allowed in metadata", "instance:\n  tags_in_metadata: true\n  tags:\n    Name: web\n    \"cost center\": x\n",
			`t.yaml:3: instance.tags: key "cost center": only a-z A-Z 0-9 + - = . , _ : @ are allowed in tag keys shown in metadata (and not ., .. or _index)`},
		{"role without a name", "instance:\n  role:\n    instance_profile_name: web\n",
			"t.yaml:2: instance.role.name: is required"},
		{"bad role name", "instance:\n  role: web server\n",
			`t.yaml:2: instance.role.name: must be 1-64 characters of letters, digits and +=,.@_-, got "web server"` + "\n" +
				`t.yaml:2: instance.role.instance_profile_name: must be 1-64 characters of letters, digits and +=,.@_-, got "web server"`},
		{"role of the wrong type", "instance:\n  role: [a]\n",
			"t.yaml:2: instance.role: must be a role name, a mapping {name, instance_profile_name, instance_profile_id} or null, got a list"},
		{"public key without key", "instance:\n  public_keys:\n    - name: admin\n",
			"t.yaml:3: instance.public_keys[0]: needs key or key_file"},
		{"public key twice", "instance:\n  public_keys:\n    - name: admin\n      key_file: keys/deploy.pub\n      key: ssh-ed25519 AAAA\n",
			"t.yaml:5: instance.public_keys[0].key: key and key_file cannot both be set; choose one"},
		{"missing key_file", "instance:\n  public_keys:\n    - name: admin\n      key_file: keys/nope.pub\n",
			"t.yaml:4: instance.public_keys[0].key_file: cannot read " + filepath.Join("testdata", "keys", "nope.pub") + ": no such file or directory"},
		{"bad public key", "instance:\n  public_keys:\n    - name: admin\n      key: AAAA\n",
			"t.yaml:4: instance.public_keys[0].key: must be an OpenSSH public key line (ssh-ed25519 AAAA…)"},
		{"bad account ID", "instance:\n  account_id: 1234\n",
			`t.yaml:2: instance.account_id: must be 12 digits, got "1234"`},
		{"merge into itself", "instance:\n  tags: &t\n    <<: *t\n",
			"t.yaml:2: instance.tags.<<: merges a mapping into itself"},
		{"merge of a list of strings", "instance:\n  tags:\n    <<: [a]\n",
			`t.yaml:3: instance.tags.<<: can only merge mappings, got the string "a"`},
		{"unknown key in a merged mapping", "instance:\n  placement: &p {group_name: g, partition: 2}\nlog: {<<: *p}\n",
			"t.yaml:2: instance.placement.partition: unknown key\n" +
				"t.yaml:2: log.group_name: unknown key\n" +
				"t.yaml:2: log.partition: unknown key"},
		{"several problems, in file order", "listen: 127.0.0.1\nlog:\n  level: loud\ninstance:\n  tags: {Name: web, Name: db}\n  hop_limit: 0\n",
			`t.yaml:1: listen: must be host:port like 127.0.0.1:1338, got "127.0.0.1"` + "\n" +
				`t.yaml:3: log.level: must be debug, info, warn or error, got "loud"` + "\n" +
				"t.yaml:5: instance.tags.Name: duplicate key (first at line 5)\n" +
				"t.yaml:6: instance.hop_limit: must be between 1 and 64, got 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tc.src), "testdata")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want\n%s", f, tc.want)
			}
			if f != nil {
				t.Errorf("Parse returned a File with an error")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			// Each line is one *Error.
			var list interface{ Unwrap() []error }
			if !errors.As(err, &list) || len(list.Unwrap()) != strings.Count(tc.want, "\n")+1 {
				t.Fatalf("want %d joined errors, got %#v", strings.Count(tc.want, "\n")+1, err)
			}
			for _, e := range list.Unwrap() {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "t.yaml" || ce.Line < 1 {
					t.Errorf("%#v is not an *Error with file and line", e)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.yaml")
	_, err := Load(path)
	want := path + ": cannot read the config file: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %s", err, want)
	}
}

func TestRole(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      *ec2.Role // InstanceProfileID is only checked for its prefix
	}{
		{"absent keeps the default role", "instance:\n  name: web\n", &ec2.Role{Name: ec2.DefaultRoleName, InstanceProfileName: ec2.DefaultRoleName}},
		{"null means no role", "instance:\n  role: null\n", nil},
		{"empty value means no role", "instance:\n  role:\n", nil},
		{"empty string means no role", "instance:\n  role: \"\"\n", nil},
		{"string shorthand", "instance:\n  role: web-server\n", &ec2.Role{Name: "web-server", InstanceProfileName: "web-server"}},
		{"mapping", "instance:\n  role:\n    name: web-server\n    instance_profile_name: web\n    instance_profile_id: AIPAEXAMPLE\n",
			&ec2.Role{Name: "web-server", InstanceProfileName: "web", InstanceProfileID: "AIPAEXAMPLE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, inst := build(t, tc.src)
			got := inst.Role
			if got != nil && tc.want != nil && tc.want.InstanceProfileID == "" {
				if !strings.HasPrefix(got.InstanceProfileID, "AIPA") {
					t.Errorf("InstanceProfileID = %q, want AIPA…", got.InstanceProfileID)
				}
				c := *got
				c.InstanceProfileID = ""
				got = &c
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Role (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShorthands(t *testing.T) {
	_, inst := build(t, `
instance:
  region: eu-central-1
  mac: 0A:1B:2C:3D:4E:5F
  local_ipv4: 10.20.30.40
  public_ipv4: ""
  ipv6: 2001:db8::1
  security_groups: [web, {name: ssh, id: sg-0123456789abcdef0}]
`)
	if len(inst.Interfaces) != 1 {
		t.Fatalf("got %d interfaces, want 1", len(inst.Interfaces))
	}
	ni := inst.Interfaces[0]
	got := ec2.NetworkInterface{
		MAC: ni.MAC, PrivateIPv4s: ni.PrivateIPv4s, PublicIPv4s: ni.PublicIPv4s, IPv6s: ni.IPv6s,
		PublicHostname: ni.PublicHostname, LocalHostname: ni.LocalHostname, SubnetIPv4CIDR: ni.SubnetIPv4CIDR,
		SecurityGroups: ni.SecurityGroups,
	}
	want := ec2.NetworkInterface{
		MAC:            "0a:1b:2c:3d:4e:5f",
		PrivateIPv4s:   []string{"10.20.30.40"},
		PublicIPv4s:    []string{}, // "" means no public address, not a derived one
		IPv6s:          []string{"2001:db8::1"},
		LocalHostname:  "ip-10-20-30-40.eu-central-1.compute.internal",
		SubnetIPv4CIDR: "10.20.30.0/24",
		SecurityGroups: []ec2.SecurityGroup{{Name: "web", ID: ni.SecurityGroups[0].ID}, {Name: "ssh", ID: "sg-0123456789abcdef0"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interface 0 (-want +got):\n%s", diff)
	}

	// Without public_ipv4, interface 0 gets a derived public address.
	_, inst = build(t, "instance:\n  mac: 06:00:00:00:00:01\n")
	if len(inst.Interfaces[0].PublicIPv4s) != 1 {
		t.Errorf("PublicIPv4s = %q, want one derived address", inst.Interfaces[0].PublicIPv4s)
	}
}

func TestValues(t *testing.T) {
	_, inst := build(t, fmt.Sprintf(`
instance:
  availability_zone: ap-southeast-2c   # the region follows the zone
  account_id: 012345678901             # YAML would read a number; the digits are kept
  ancestor_ami_ids: [ami-0aaaaaaaaaaaaaaaa]
  ami_launch_index: 3
  placement: {partition_number: 2, host_id: h-0123456789abcdef0}
  autoscaling_target_lifecycle_state: InService
  block_devices: {root: /dev/nvme0n1, ephemeral0: sdb}
  tags:
    b: 1.10
    a: true
    c: 0x1F
    d:
    e: "quoted"
  user_data: !!binary |
    %s
`, base64.StdEncoding.EncodeToString(gzipped(t, "hello"))))
	checks := []struct {
		name      string
		got, want any
	}{
		{"Region", inst.Region, "ap-southeast-2"},
		{"AvailabilityZoneID", inst.AvailabilityZoneID, "apse2-az3"},
		{"AccountID", inst.AccountID, "012345678901"},
		{"AncestorAMIIDs", inst.AncestorAMIIDs, []string{"ami-0aaaaaaaaaaaaaaaa"}},
		{"AMILaunchIndex", inst.AMILaunchIndex, 3},
		{"Placement", inst.Placement, ec2.Placement{PartitionNumber: 2, HostID: "h-0123456789abcdef0"}},
		{"AutoscalingState", inst.AutoscalingState, "InService"},
		{"BlockDevices", inst.BlockDevices, []ec2.BlockDevice{{Name: "root", Device: "/dev/nvme0n1"}, {Name: "ephemeral0", Device: "sdb"}}},
		{"Tags", inst.Tags, []ec2.Tag{{Key: "b", Value: "1.10"}, {Key: "a", Value: "true"}, {Key: "c", Value: "0x1F"}, {Key: "d", Value: ""}, {Key: "e", Value: "quoted"}}},
		{"UserData", inst.UserData, gzipped(t, "hello")},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}

	// Empty user data is none: EC2 cannot have empty user data.
	_, inst = build(t, "instance:\n  user_data: \"\"\n")
	if inst.UserData != nil {
		t.Errorf("UserData = %q, want nil", inst.UserData)
	}
}

func TestAdminSocketGroup(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"admin:\n  socket_group: imds\n", "imds"},
		{"admin:\n  socket_group: \"998\"\n", "998"},
		{"admin:\n  socket: /run/imds/admin.sock\n", ""},
	} {
		f, err := Parse("t.yaml", []byte(tt.src), "/etc/imds")
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		if f.Admin.SocketGroup != tt.want {
			t.Errorf("Parse(%q).Admin.SocketGroup=%q, want %q", tt.src, f.Admin.SocketGroup, tt.want)
		}
	}
}

func TestListen(t *testing.T) {
	for src, want := range map[string][]string{
		"listen: 0.0.0.0:80\n":                  {"0.0.0.0:80"},
		"listen: [\":1338\", \"[::1]:1338\"]\n": {":1338", "[::1]:1338"},
	} {
		f, _ := build(t, src)
		if diff := cmp.Diff(want, f.Listen); diff != "" {
			t.Errorf("%q: Listen (-want +got):\n%s", src, diff)
		}
	}
}

func TestCredentialsDefaultRotationFollowsLifetime(t *testing.T) {
	f, _ := build(t, "credentials:\n  lifetime: 30m\n")
	if want := (Credentials{Lifetime: 30 * time.Minute, RotateAfter: 15 * time.Minute}); f.Credentials != want {
		t.Errorf("Credentials = %+v, want %+v", f.Credentials, want)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "conf", "imds.yaml"), []byte("data_dir: state\n"))
	f, err := Load(filepath.Join(dir, "conf", "imds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "conf", "state"); f.DataDir != want {
		t.Errorf("DataDir = %q, want %q", f.DataDir, want)
	}
}

func TestUserDataFileIsReadByteForByte(t *testing.T) {
	dir := t.TempDir()
	data := gzipped(t, "#cloud-config\nruncmd: [reboot]\n")
	data = append(data, 0x00, 0xff, '\r', '\n') // trailing bytes that trimming would lose
	write(t, filepath.Join(dir, "ud.gz"), data)
	write(t, filepath.Join(dir, "imds.yaml"), []byte("instance:\n  user_data_file: ud.gz\n"))
	f, err := Load(filepath.Join(dir, "imds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := f.BuildInstance(opt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inst.UserData, data) {
		t.Errorf("UserData = %x\nwant       %x", inst.UserData, data)
	}
}

func TestAnchorsAndMerges(t *testing.T) {
	_, inst := build(t, `
instance:
  name: &name web-1
  tags:
    <<: [{env: prod, owner: ops}, {env: ignored, tier: web}]
    Name: *name
    env: staging
  network_interfaces:
    - &eni
      subnet_ipv4_cidr: 10.1.0.0/24
      security_groups: [web, ssh]
    - <<: *eni
      device_number: 1
`)
	// Explicit keys win over merged ones, and the first merged mapping over
	// later ones; merged keys sit where the merge key is.
	wantTags := []ec2.Tag{{Key: "owner", Value: "ops"}, {Key: "tier", Value: "web"}, {Key: "Name", Value: "web-1"}, {Key: "env", Value: "staging"}}
	if diff := cmp.Diff(wantTags, inst.Tags); diff != "" {
		t.Errorf("Tags (-want +got):\n%s", diff)
	}
	if len(inst.Interfaces) != 2 {
		t.Fatalf("got %d interfaces", len(inst.Interfaces))
	}
	for i, ni := range inst.Interfaces {
		if ni.SubnetIPv4CIDR != "10.1.0.0/24" || len(ni.SecurityGroups) != 2 || ni.DeviceNumber != i {
			t.Errorf("interface %d = %+v, want the merged subnet and groups", i, ni)
		}
	}
}

func TestTooManyAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString("instance:\n  security_groups: &g [")
	for i := range 1000 {
		fmt.Fprintf(&b, "g%d, ", i)
	}
	b.WriteString("x]\n  network_interfaces:\n")
	for range 1000 {
		b.WriteString("    - {security_groups: *g}\n")
	}
	start := time.Now()
	_, err := Parse("t.yaml", []byte(b.String()), "")
	if err == nil || !strings.Contains(err.Error(), "document is too large or uses too many aliases") {
		t.Fatalf("err = %.300v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestLineOf(t *testing.T) {
	lines := map[string]int{"instance": 7, "instance.network_interfaces": 9, "instance.network_interfaces[1]": 12, "instance.role": 20}
	for path, want := range map[string]int{
		"instance.network_interfaces[1].mac": 12,
		"instance.network_interfaces[0].mac": 9,
		"instance.role.instance_profile_id":  20,
		"instance.availability_zone_id":      7,
		"listen":                             1,
	} {
		if got := lineOf(lines, path); got != want {
			t.Errorf("lineOf(%q) = %d, want %d", path, got, want)
		}
	}
	if got := lineOf(nil, "instance.role"); got != 0 {
		t.Errorf("lineOf without a file = %d, want 0", got)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Field: "instance.mac", Problem: "bad"}, "a.yaml:3: instance.mac: bad"},
		{Error{File: "a.yaml", Line: 1, Problem: "invalid YAML: x"}, "a.yaml:1: invalid YAML: x"},
		{Error{File: "a.yaml", Problem: "cannot read the config file: x"}, "a.yaml: cannot read the config file: x"},
		{Error{Field: "instance.mac", Problem: "bad"}, "instance.mac: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestGolden checks the whole report for a file with many mistakes; run with
// -update after an intended change of wording.
func TestGolden(t *testing.T) {
	_, err := Load("testdata/bad.yaml")
	if err == nil {
		t.Fatal("testdata/bad.yaml parsed without errors")
	}
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile("testdata/bad.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/bad.golden")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("report for testdata/bad.yaml (-golden +got):\n%s", diff)
	}
}

func ExampleLoad() {
	f, err := Load("testdata/full.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	inst, err := f.BuildInstance(ec2.DeriveOptions{Seed: []byte("machine-id")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Listen, f.Credentials.Lifetime)
	fmt.Println(inst.ID, inst.AvailabilityZone, inst.Metadata.HTTPTokens)
	for _, tag := range inst.Tags {
		fmt.Printf("%s=%s ", tag.Key, tag.Value)
	}
	fmt.Println()
	// Output:
	// [127.0.0.1:1338 [::1]:1338] 6h0m0s
	// i-0a1b2c3d4e5f60718 eu-west-1b required
	// Name=web-1 env=staging team=platform cost-center=4711
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedHosts(t *testing.T) {
	f, err := Parse("t.yaml", []byte("allowed_hosts: [imds, metadata.local, \"*\"]\n"), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.AllowedHosts, []string{"imds", "metadata.local", "*"}); diff != "" {
		t.Errorf("AllowedHosts (-got +want):\n%s", diff)
	}
}

func TestLimits(t *testing.T) {
	f, err := Parse("t.yaml", []byte("limits:\n  max_connections: 100\n  max_connections_per_source: 8\n  header_timeout: 2s\n  body_timeout: 1s\n  idle_timeout: 30s\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxConnections: 100, MaxConnectionsPerSource: 8, HeaderTimeout: 2 * time.Second, BodyTimeout: time.Second, IdleTimeout: 30 * time.Second}
	if f.Limits != want {
		t.Errorf("Limits = %+v, want %+v", f.Limits, want)
	}
	for doc, msg := range map[string]string{
		"limits:\n  max_connections: 0\n":         "t.yaml:2: limits.max_connections: must be between 1 and",
		"limits:\n  body_timeout: 1ms\n":          "t.yaml:2: limits.body_timeout:",
		"limits:\n  max_connection_per_source: 1": "did you mean",
	} {
		if _, err := Parse("t.yaml", []byte(doc), ""); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", doc, err, msg)
		}
	}
}
