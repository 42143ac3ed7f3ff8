package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
)

func sampleSpec() *ec2.Instance {
	inst := ec2.NewDefaultInstance()
	inst.Name = "web-1"
	inst.ID = "i-0123456789abcdef0"
	inst.AvailabilityZone = "eu-west-1b"
	inst.Region = "eu-west-1"
	inst.InstanceType = "t3.small"
	inst.AncestorAMIIDs = []string{"ami-0aaaaaaaaaaaaaaaa"}
	inst.PendingTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // fixed instant: decoded and compared
	inst.Monitoring = true
	inst.Placement = ec2.Placement{GroupName: "pg", PartitionNumber: 2}
	inst.Interfaces = []ec2.NetworkInterface{{MAC: "02:00:00:00:00:01", PrivateIPv4s: []string{"10.0.0.5"}, PublicIPv4s: []string{},
		SecurityGroups: []ec2.SecurityGroup{{Name: "web", ID: "sg-0123456789abcdef0"}}}, {DeviceNumber: 1}}
	inst.BlockDevices = []ec2.BlockDevice{{Name: "root", Device: "/dev/xvda"}, {Name: "ami", Device: "/dev/xvda"}}
	inst.PublicKeys = []ec2.PublicKey{{Name: "alice", Key: "ssh-ed25519 AAAAC3Nza alice@example"}}
	inst.Tags = []ec2.Tag{{Key: "z", Value: "last"}, {Key: "Name", Value: "web-1"}}
	inst.Metadata = ec2.MetadataOptions{HTTPTokens: "required", TagsInMetadata: true, PutResponseHopLimit: 2}
	inst.UserData = []byte{0x1f, 0x8b, 0xff, 0x00}
	inst.Role = &ec2.Role{Name: "web-role", InstanceProfileName: "web"}
	inst.SourceAddrs = []string{"10.0.0.5", "fd00::5"}
	inst.MatchMAC = true
	return inst
}

func TestMarshalParseRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec *ec2.Instance
	}{
		{"full", sampleSpec()},
		{"no role, text user data", func() *ec2.Instance {
			i := ec2.NewDefaultInstance()
			i.Name = "bare"
			i.Role = nil
			i.UserData = []byte("#cloud-config\n")
			return i
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := MarshalInstance(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseInstances("doc.json", doc)
			if err != nil {
				t.Fatalf("ParseInstances(%s): %v", doc, err)
			}
			if len(got) != 1 {
				t.Fatalf("%d instances", len(got))
			}
			if diff := cmp.Diff(got[0], tt.spec); diff != "" {
				t.Errorf("round trip (-got +want):\n%s\ndocument: %s", diff, doc)
			}
		})
	}
	// A derived instance re-derives to itself.
	inst := sampleSpec()
	ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("s")})
	doc, _ := MarshalInstance(inst)
	got, err := ParseInstances("doc.json", doc)
	if err != nil {
		t.Fatal(err)
	}
	ec2.Derive(got[0], ec2.DeriveOptions{Seed: []byte("other seed")})
	if diff := cmp.Diff(got[0], inst); diff != "" {
		t.Errorf("derived round trip (-got +want):\n%s", diff)
	}
}

func TestParseInstancesShapes(t *testing.T) {
	for _, src := range []string{
		"name: a\n",
		`{"name": "a"}`,
		"- name: a\n- name: b\n",
		"instances:\n  - name: a\n  - name: b\n",
	} {
		got, err := ParseInstances("x", []byte(src))
		if err != nil || len(got) == 0 || got[0].Name != "a" {
			t.Errorf("ParseInstances(%q) = %v, %v", src, got, err)
		}
	}
	for _, tt := range []struct{ src, want string }{
		{"region: eu-west-1\n", "x:1: name: is required for each of several instances"},
		{"- name: a\n- name: a\n", `x:2: [1].name: "a" is already the name of instances[0]`},
		{"name: a\nuser_data_file: /etc/shadow\n", "x:2: user_data_file: cannot read /etc/shadow: documents sent to the server cannot reference files"},
		{"name: a\nregoin: x\n", "x:2: regoin: unknown key; did you mean region?"},
		{"42\n", "x:1: must be an instance definition, a list of them or a mapping with instances:, got"},
		{"", "x:1: no instance definition found"},
		{"- name: a\n  source_addresses: [10.0.0.1]\n- name: b\n  source_addresses: [10.0.0.1]\n", "x:4: [1].source_addresses[0]: 10.0.0.1 is already an address of instance a"},
	} {
		_, err := ParseInstances("x", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseInstances(%q): err=%v, want it to contain %q", tt.src, err, tt.want)
		}
	}
}

func TestInstancesSection(t *testing.T) {
	f, err := Parse("t.yaml", []byte(`default_instance: b
identity:
  trusted_proxies: [10.0.0.1, 192.168.0.0/24]
  proxy_secret: 0123456789abcdef0123
instances:
  - name: a
    source_addresses: [10.1.0.2]
  - name: b
    source_addresses: [10.1.0.3]
    match_mac: true
    mac: 02:00:00:00:00:0b
`), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	insts, err := f.BuildInstances(ec2.DeriveOptions{Seed: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 2 || insts[0].Primary().PrivateIPv4s[0] != "10.1.0.2" || !insts[1].MatchMAC || insts[1].Origin != ec2.OriginConfig {
		t.Errorf("instances %+v", insts)
	}
	if f.DefaultInstance != "b" || len(f.Identity.TrustedProxies) != 2 || f.Identity.TrustedProxies[0].String() != "10.0.0.1/32" {
		t.Errorf("default %q identity %+v", f.DefaultInstance, f.Identity)
	}
	for _, tt := range []struct{ src, want string }{
		{"default_instance: z\ninstances:\n  - name: a\n", `t.yaml:1: default_instance: "z" is not the name of one of instances`},
		{"instance: {}\ninstances:\n  - name: a\n", "t.yaml:2: instances: cannot be combined with instance:"},
		{"identity:\n  proxy_secret: short\n", "t.yaml:2: identity.proxy_secret: must be at least 16 characters"},
		{"identity:\n  trusted_proxies: [nope]\n", `t.yaml:2: identity.trusted_proxies[0]: must be an address or CIDR, got "nope"`},
		{"instances:\n  - name: a\n    mac: zz\n", "t.yaml:3: instances[0].network_interfaces[0].mac: must be six lower-case hex pairs"},
	} {
		_, err := Parse("t.yaml", []byte(tt.src), "testdata")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): err=%v, want %q", tt.src, err, tt.want)
		}
	}
}

func TestSchedule(t *testing.T) {
	f, err := Parse("t.yaml", []byte(`instances:
  - name: worker
    schedule:
      - event: spot
        after: 10m
        action: stop
        lead: 5m
      - event: maintenance
        at: 2026-12-01T09:00:00Z
        code: instance-retirement
      - event: asg
        after: 1h
        state: Terminated
`), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	s := f.Schedules()
	if len(s) != 1 || s[0].Instance != "worker" || len(s[0].Events) != 3 {
		t.Fatalf("schedules %+v", s)
	}
	spot, m, asg := s[0].Events[0], s[0].Events[1], s[0].Events[2]
	if spot.After != 10*time.Minute || spot.Request.Type != "spot" || spot.Request.Action != "stop" || spot.Request.Lead != 5*time.Minute {
		t.Errorf("spot %+v", spot)
	}
	if !m.At.Equal(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)) || m.Request.Code != "instance-retirement" { // fixed instant: decoded and compared
		t.Errorf("maintenance %+v", m)
	}
	if asg.Request.State != "Terminated" {
		t.Errorf("asg %+v", asg)
	}
	for _, tt := range []struct{ src, want string }{
		{"instance:\n  schedule:\n    - event: spot\n", "needs exactly one of after (a delay from start-up) and at (a time)"},
		{"instance:\n  schedule:\n    - event: spot\n      after: 1m\n      at: 2026-12-01T09:00:00Z\n", "needs exactly one of after"},
		{"instance:\n  schedule:\n    - after: 1m\n", "instance.schedule[0].event: is required"},
		{"instance:\n  schedule:\n    - event: asg\n      after: 1m\n", "instance.schedule[0].state: is required for an asg event"},
		{"instance:\n  schedule:\n    - event: rebalance\n      after: 1m\n      code: system-reboot\n", "code, description and duration only apply to maintenance events"},
		{"instance:\n  schedule:\n    - event: spot\n      at: tomorrow\n", `must be an RFC 3339 time`},
		{"instance:\n  schedule:\n    - event: reboot\n      after: 1m\n", `instance.schedule[0].event: must be spot, rebalance, maintenance or asg`},
	} {
		if _, err := Parse("t.yaml", []byte(tt.src), "testdata"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q): %v, want %q", tt.src, err, tt.want)
		}
	}
	if _, err := ParseInstances("doc", []byte("name: x\nschedule:\n  - event: spot\n    after: 1m\n")); err == nil || !strings.Contains(err.Error(), "config file only") {
		t.Errorf("a schedule in an API document: %v", err)
	}
}

// TestParseInstancesNames: a name is a string in ec2.CheckName's grammar;
// anything else is refused with a message naming the field, never turned
// into text or into the default instance's name.
func TestParseInstancesNames(t *testing.T) {
	for doc, want := range map[string]string{
		`{"name":123}`:              `api:1: name: must be a string, got 123 (quote it)`,
		`{"name":true}`:             `api:1: name: must be a string, got true (quote it)`,
		`{"name":["a"]}`:            `api:1: name: must be a string, got a list`,
		`{"name":null}`:             `api:1: name: must be a string, got null`,
		`{"name":""}`:               `api:1: name: the instance name must not be empty`,
		`{"name":"."}`:              `api:1: name: "." is not an instance name`,
		`{"name":".."}`:             `api:1: name: ".." is not an instance name`,
		`{"name":"a\u0000b"}`:       `contains the control character U+0000`,
		`{"name":"x\u202eexe"}`:     `contains the control character U+202E`,
		"name: 4711\n":              `api:1: name: must be a string, got 4711 (quote it)`,
		"- name: ok\n- name: a/b\n": `api:2: [1].name: the instance name "a/b" contains a slash`,
	} {
		_, err := ParseInstances("api", []byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", doc)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", doc, err, want)
		}
		if strings.ContainsAny(err.Error(), "\x00\u202e") {
			t.Errorf("%s: raw control character in %q", doc, err)
		}
	}
	specs, err := ParseInstances("api", []byte(`{"name":"123"}`))
	if err != nil || len(specs) != 1 || specs[0].Name != "123" {
		t.Errorf(`{"name":"123"}: %v, %v; want the name "123"`, specs, err)
	}
}

// TestDocumentSources covers the rules between keys of one document: one
// source of user data whatever the order of the keys, and key_file naming
// a file.
func TestDocumentSources(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"name: a\nuser_data: hi\nuser_data_base64: aGk=\n", "x:3: user_data_base64: cannot be combined with user_data (line 2); choose one"},
		{"name: a\nuser_data_base64: aGk=\nuser_data: hi\n", "x:3: user_data: cannot be combined with user_data_base64 (line 2); choose one"},
		{"name: a\nuser_data_base64: '%%'\n", "x:2: user_data_base64: must be standard base64"},
		{"name: a\nuser_data_file: ''\n", "x:2: user_data_file: must be a file path, got an empty string"},
		{"name: a\npublic_keys: [{name: k, key_file: ''}]\n", "x:2: public_keys[0].key_file: must be a file path, got an empty string"},
		{"name: a\nrole: {instance_profile_name: p}\n", "x:2: role.name: is required"},
		{"name: a\nmac: 06:00:00:00:00:01\nnetwork_interfaces: [{}]\n", "x:2: mac: cannot be combined with network_interfaces (line 3)"},
	} {
		_, err := ParseInstances("x", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseInstances(%q):\n got %v\nwant %q", tt.src, err, tt.want)
		}
	}
	for src, want := range map[string]*ec2.Role{
		"name: a\nrole: ''\n":   nil,
		"name: a\nrole: null\n": nil,
		"name: a\nrole: r\n":    {Name: "r"},
		"name: a\nrole: {name: r, instance_profile_id: AIPA}\n": {Name: "r", InstanceProfileID: "AIPA"},
		"name: a\n": {Name: ec2.DefaultRoleName},
	} {
		specs, err := ParseInstances("x", []byte(src))
		if err != nil {
			t.Errorf("ParseInstances(%q): %v", src, err)
			continue
		}
		if diff := cmp.Diff(want, specs[0].Role); diff != "" {
			t.Errorf("ParseInstances(%q) role (-want +got):\n%s", src, diff)
		}
	}
}

// TestMarshalInstanceDocument pins the document MarshalInstance writes:
// keys in schema order, empty values left out, role always.
func TestMarshalInstanceDocument(t *testing.T) {
	inst := ec2.NewDefaultInstance()
	inst.Name = "web-1"
	inst.Origin = ec2.OriginAPI
	inst.Interfaces = []ec2.NetworkInterface{{PublicIPv4s: []string{}}, {DeviceNumber: 1}}
	inst.Tags = []ec2.Tag{{Key: "z", Value: "1"}, {Key: "a", Value: ""}}
	inst.Events.Rebalance = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) // fixed instant: only formatted
	inst.Role = nil
	got, err := MarshalInstance(inst)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"web-1","origin":"api","network_interfaces":[{"public_ipv4s":[]},{"device_number":1}],` +
		`"tags":{"z":"1","a":""},"role":null,"events":{"rebalance":"2026-01-02T03:04:05Z"}}`
	if string(got) != want {
		t.Errorf("MarshalInstance:\n got %s\nwant %s", got, want)
	}
}

// TestLoadInstancesReadFiles: the CLI sends a file as it is unless it
// references other files, which LoadInstances reads and reports.
func TestLoadInstancesReadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("k.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ1enotZnV6ei1mdXp6 k\n")
	for _, tt := range []struct {
		doc       string
		readFiles bool
	}{
		{"name: a\npublic_keys: [{name: k, key: ssh-ed25519 AAAA}]\n", false},
		{"name: a\npublic_keys: [{name: k, key_file: k.pub}]\n", true},
	} {
		specs, readFiles, err := LoadInstances(write("doc.yaml", tt.doc))
		if err != nil || readFiles != tt.readFiles || len(specs) != 1 || specs[0].PublicKeys[0].Key == "" {
			t.Errorf("LoadInstances(%q) = %v, %v, %v; want readFiles %v and the key", tt.doc, specs, readFiles, err, tt.readFiles)
		}
	}
}
