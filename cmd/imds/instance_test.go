package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// runArgs runs the command line as main does and returns what it printed
// and its exit status.
func runArgs(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// runCLI is runArgs for a test.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runArgs(args...)
}

// mustRunCLI runs a command that must succeed and returns its output.
func mustRunCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// mustFailCLI runs a command that must fail with one line on stderr
// containing want, and returns that line.
func mustFailCLI(t *testing.T, want string, args ...string) string {
	t.Helper()
	_, errOut, code := runCLI(t, args...)
	if code == 0 {
		t.Fatalf("imds %s: exit 0, want an error containing %q", strings.Join(args, " "), want)
	}
	if !strings.HasPrefix(errOut, "imds: ") || !strings.Contains(errOut, want) || strings.Contains(errOut, "code=") {
		t.Errorf("imds %s: stderr %q, want \"imds: ...%s...\" without a Go error value", strings.Join(args, " "), errOut, want)
	}
	return errOut
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tableRows splits table output into header and rows of fields.
func tableRows(t *testing.T, out string) (header []string, rows map[string][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header = strings.Fields(lines[0])
	rows = map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			t.Fatalf("row %q has %d columns, header %d:\n%s", l, len(f), len(header), out)
		}
		rows[f[0]] = f
	}
	return header, rows
}

func testConfigInstance() *ec2.Instance {
	inst := admintest.Instance("cfg", "10.0.0.1")
	inst.Region = "eu-west-1"
	return inst
}

func TestInstanceCommands(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, nil)
	sock := "--admin-socket=" + srv.SocketPath
	dir := t.TempDir()
	userData := writeFile(t, dir, "cloud-init.yaml", "#cloud-config\nhostname: web-1\n")

	out := mustRunCLI(t, "instance", "add", "web-1", sock, "--ip", "10.0.0.5", "--ip", "fd00::5",
		"--mac", "02:AA:BB:CC:DD:01", "--role", "web-role", "--tag", "env=dev", "--tag", "team=a",
		"--imdsv2", "required", "--user-data", userData, "--instance-type", "t3.small", "--region", "eu-west-1")
	if _, rows := tableRows(t, out); rows["web-1"] == nil {
		t.Errorf("add output lacks web-1:\n%s", out)
	}

	out = mustRunCLI(t, "instance", "list", sock)
	header, rows := tableRows(t, out)
	if got, want := strings.Join(header, " "), "NAME INSTANCE-ID ORIGIN ADDRESSES MAC ROLE IMDSV2"; got != want {
		t.Errorf("list header = %q, want %q", got, want)
	}
	web := rows["web-1"]
	if web == nil || !strings.HasPrefix(web[1], "i-") ||
		strings.Join(append([]string{web[0]}, web[2:]...), " ") != "web-1 api 10.0.0.5,fd00::5 02:aa:bb:cc:dd:01 web-role required" {
		t.Errorf("list row of web-1 = %q", web)
	}
	if cfg := rows["cfg"]; strings.Join(append([]string{cfg[0]}, cfg[2:]...), " ") != "cfg config 10.0.0.1 "+cfg[4]+" "+ec2.DefaultRoleName+" optional" {
		t.Errorf("list row of cfg = %q", cfg)
	}
	if len(rows) != 2 {
		t.Errorf("list has %d rows, want 2:\n%s", len(rows), out)
	}

	var list struct {
		Instances []map[string]any `json:"instances"`
	}
	out = mustRunCLI(t, "instance", "list", "-o", "json", sock)
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Instances) != 2 || list.Instances[1]["name"] != "web-1" {
		t.Errorf("list -o json = %v (%v):\n%s", list, err, out)
	}
	out = mustRunCLI(t, "instance", "list", "-o", "yaml", sock)
	list.Instances = nil
	if err := yaml.Unmarshal([]byte(out), &list); err != nil || len(list.Instances) != 2 {
		t.Errorf("list -o yaml = %v (%v):\n%s", list, err, out)
	}

	// get: YAML by default, in schema order, user data as a block.
	out = mustRunCLI(t, "instance", "get", "web-1", sock)
	if !strings.HasPrefix(out, "name: web-1\norigin: api\ninstance_id: i-") || !strings.Contains(out, "user_data: |\n  #cloud-config\n  hostname: web-1\n") {
		t.Errorf("get (yaml) =\n%s", out)
	}
	var doc map[string]any
	out = mustRunCLI(t, "instance", "get", "web-1", "-o", "json", sock)
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["name"] != "web-1" || doc["instance_type"] != "t3.small" || doc["match_mac"] != true {
		t.Errorf("get -o json = %v (%v):\n%s", doc, err, out)
	}
	id := doc["instance_id"]
	doc = nil
	out = mustRunCLI(t, "instance", "get", "web-1", "--spec", "-o", "json", sock)
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["instance_id"] != nil || doc["imdsv2"] != "required" {
		t.Errorf("get --spec -o json = %v (%v):\n%s", doc, err, out)
	}
	if _, rows := tableRows(t, mustRunCLI(t, "instance", "get", "web-1", "-o", "table", sock)); len(rows) != 1 {
		t.Errorf("get -o table: %d rows, want 1", len(rows))
	}

	// set changes only what is given.
	mustRunCLI(t, "instance", "set", "web-1", sock, "--tag", "env-", "--tag", "tier=web", "--tag", "team=b", "--ip", "10.0.0.6", "--imdsv2", "optional")
	out = mustRunCLI(t, "instance", "get", "web-1", "--spec", "-o", "json", sock)
	var spec struct {
		Tags        map[string]string `json:"tags"`
		Addrs       []string          `json:"source_addresses"`
		IMDSv2      string            `json:"imdsv2"`
		Role        struct{ Name string }
		UserData    string `json:"user_data"`
		Type        string `json:"instance_type"`
		NetworkIfcs []struct {
			MAC string `json:"mac"`
		} `json:"network_interfaces"`
	}
	if err := json.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(spec.Tags) != "map[team:b tier:web]" || strings.Join(spec.Addrs, ",") != "10.0.0.6" || spec.IMDSv2 != "optional" ||
		spec.Role.Name != "web-role" || spec.UserData != "#cloud-config\nhostname: web-1\n" || spec.Type != "t3.small" ||
		len(spec.NetworkIfcs) != 1 || spec.NetworkIfcs[0].MAC != "02:aa:bb:cc:dd:01" {
		t.Errorf("spec after set = %+v\n%s", spec, out)
	}
	mustRunCLI(t, "instance", "set", "web-1", sock, "--role", "", "--user-data", "")
	out = mustRunCLI(t, "instance", "get", "web-1", "--spec", "-o", "yaml", sock)
	if !strings.Contains(out, "role: null\n") || strings.Contains(out, "user_data") {
		t.Errorf("spec after clearing role and user data:\n%s", out)
	}

	// Values only the server checks come back as field: problem.
	errOut := mustFailCLI(t, `instance_type: must look like m5.large, got "huge"`, "instance", "add", "web-3", "--instance-type", "huge", sock)
	if errOut != "imds: instance_type: must look like m5.large, got \"huge\"\n" {
		t.Errorf("add with a bad instance type: stderr %q", errOut)
	}
	mustFailCLI(t, "nothing to change", "instance", "set", "web-1", sock)
	mustFailCLI(t, `instance "cfg" is declared in the config file`, "instance", "set", "cfg", "--imdsv2", "required", sock)
	mustFailCLI(t, `no instance named "nope"`, "instance", "get", "nope", sock)
	mustFailCLI(t, `address 10.0.0.6 is already used by instance "web-1"`, "instance", "add", "web-2", "--ip", "10.0.0.6", sock)

	// The YAML of get is a document add --from-file takes back.
	saved := writeFile(t, dir, "web-1.yaml", mustRunCLI(t, "instance", "get", "web-1", sock))
	out, errOut, code := runCLI(t, "instance", "rm", "web-1", "nope", sock)
	if code == 0 || out != "removed web-1\n" || errOut != "imds: no instance named \"nope\"\n" {
		t.Errorf("rm web-1 nope: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out = mustRunCLI(t, "instance", "add", "--from-file", saved, "-o", "json", sock)
	if !strings.Contains(out, fmt.Sprintf(`"instance_id": %q`, id)) {
		t.Errorf("add --from-file of get's output: want the same ID %s:\n%s", id, out)
	}
}

func TestInstanceAddFromFile(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, nil)
	sock := "--admin-socket=" + srv.SocketPath
	dir := t.TempDir()
	writeFile(t, dir, "ud.sh", "#!/bin/sh\necho hi\n")

	// Files referenced by the document are read here and sent inlined.
	withFile := writeFile(t, dir, "fleet.yaml", `instances:
  - name: a1
    source_addresses: [10.2.0.1]
    user_data_file: ud.sh
  - name: a2
    tags: {env: ci}
`)
	_, rows := tableRows(t, mustRunCLI(t, "instance", "add", "--from-file", withFile, sock))
	if rows["a1"] == nil || rows["a2"] == nil {
		t.Errorf("add --from-file: rows %v, want a1 and a2", rows)
	}
	if out := mustRunCLI(t, "instance", "get", "a1", "-o", "json", sock); !strings.Contains(out, `"user_data": "#!/bin/sh\necho hi\n"`) {
		t.Errorf("a1 lacks its user data file:\n%s", out)
	}

	// Problems name the user's file and line: found here...
	bad := writeFile(t, dir, "bad.yaml", "- name: b1\n- name: b2\n  colour: red\n")
	mustFailCLI(t, bad+":3: ", "instance", "add", "--from-file", bad, sock)
	// ...or by the server, which got the file as it is.
	taken := writeFile(t, dir, "taken.yaml", "- name: c1\n- name: c2\n  source_addresses: [10.2.0.1]\n")
	msg := mustFailCLI(t, `instance "c2" (2 of 2): address 10.2.0.1 is already used by instance "a1"`, "instance", "add", "--from-file", taken, sock)
	if !strings.Contains(msg, "kept: c1") {
		t.Errorf("batch failure %q does not say c1 stays", msg)
	}
	mustFailCLI(t, "no such file", "instance", "add", "--from-file", filepath.Join(dir, "missing.yaml"), sock)
}

func TestInstanceFlagValidation(t *testing.T) {
	// No server: every one of these must fail before trying to reach it.
	sock := "--admin-socket=" + filepath.Join(admintest.SocketDir(t), "none.sock")
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "x", "--ip", "999.1.1.1"}, `--ip: "999.1.1.1" is not an IP address`},
		{[]string{"add", "x", "--ip", "fe80::1%eth0"}, `--ip: "fe80::1%eth0" is not an IP address`},
		{[]string{"add", "x", "--tag", "novalue"}, `--tag: "novalue" must be KEY=VALUE`},
		{[]string{"add", "x", "--tag", "=v"}, `--tag: "=v" must be KEY=VALUE`},
		{[]string{"add", "x", "--tag", "k-"}, `--tag: "k-" must be KEY=VALUE`},
		{[]string{"add", "x", "--user-data", filepath.Join(dir, "missing")}, "--user-data: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]string{"add", "x", "--mac", "zz:zz"}, `--mac: "zz:zz" is not a MAC address`},
		{[]string{"add", "x", "--imdsv2", "sometimes"}, `--imdsv2: must be optional or required, got "sometimes"`},
		{[]string{"add", "x", "--region", ""}, "--region: must not be empty"},
		{[]string{"add"}, "instance add needs an instance NAME, --from-file FILE or --from-libvirt DOMAIN.xml"},
		{[]string{"add", "x", "--from-file", "f.yaml"}, "--from-file: cannot be combined"},
		{[]string{"add", "--from-file", "f.yaml", "--tag", "a=b"}, "--from-file: cannot be combined"},
		{[]string{"list", "-o", "xml"}, `-o/--output: must be table, json or yaml, got "xml"`},
		{[]string{"get", "x", "-o", "toml"}, `-o/--output: must be table, json or yaml`},
		{[]string{"set", "x", "--tag", "nokey"}, `--tag: "nokey" must be KEY=VALUE, or KEY- to remove a tag`},
		{[]string{"set", "x"}, "nothing to change: give at least one of --ip, --mac,"},
		{[]string{"list", "--admin-url", "ftp://host"}, "--admin-url: must be an http:// or https:// URL"},
		{[]string{"list", "--admin-url", "http://127.0.0.1:1"}, "--admin-url: the admin API on TCP needs --admin-token-file"},
		{[]string{"list", "--admin-token-file", "t"}, "--admin-token-file: only used with --admin-url"},
		{[]string{"list", "--admin-url", "http://127.0.0.1:1", "--admin-token-file", filepath.Join(dir, "none")}, "--admin-token-file: open "},
	} {
		errOut := mustFailCLI(t, tt.want, append(append([]string{"instance"}, tt.args...), sock)...)
		if strings.Count(errOut, "\n") != 1 {
			t.Errorf("imds instance %s: stderr %q, want one line", strings.Join(tt.args, " "), errOut)
		}
	}
}

func TestInstanceUnreachable(t *testing.T) {
	path := filepath.Join(admintest.SocketDir(t), "none.sock")
	mustFailCLI(t, "cannot reach the imds admin socket "+path+": is `imds serve` running? (dial unix "+path+": connect: no such file or directory)",
		"instance", "list", "--admin-socket", path)
}

func TestInstanceAdminSocketEnv(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, nil)
	t.Setenv("IMDS_ADMIN_SOCKET", srv.SocketPath)
	if _, rows := tableRows(t, mustRunCLI(t, "instance", "list")); rows["cfg"] == nil {
		t.Errorf("IMDS_ADMIN_SOCKET was not used")
	}
	// The flag wins over the environment.
	mustFailCLI(t, "cannot reach", "instance", "list", "--admin-socket", srv.SocketPath+".other")
}

func TestInstanceTCP(t *testing.T) {
	const token = "a-test-token-of-32-characters-xx"
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, func(s *admin.Server) {
		s.TCPAddr, s.Token = "127.0.0.1:0", token
	})
	dir := t.TempDir()
	good := writeFile(t, dir, "token", token+"\n")
	wrong := writeFile(t, dir, "wrong", "not-the-token-at-all\n")
	if _, rows := tableRows(t, mustRunCLI(t, "instance", "list", "--admin-url", srv.TCPURL(), "--admin-token-file", good)); rows["cfg"] == nil {
		t.Errorf("list over TCP lacks cfg")
	}
	mustFailCLI(t, "invalid admin API token", "instance", "list", "--admin-url", srv.TCPURL(), "--admin-token-file", wrong)
}
