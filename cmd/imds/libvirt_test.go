package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

const (
	libvirtTestDomain = "../../internal/libvirt/testdata/test-domain.xml"
	libvirtTestID     = "i-04fbe0879f5844d57"
)

// runLibvirt runs the command line like run does, with stdin.
func runLibvirt(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(&out, &errOut, clock.Real{})
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	code = 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		errOut.WriteString("imds: " + err.Error() + "\n")
		code = 1
	}
	return code, out.String(), errOut.String()
}

func libvirtDomain(t *testing.T, imds string) string {
	t.Helper()
	data, err := os.ReadFile(libvirtTestDomain)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	if imds != "" {
		doc = strings.Replace(doc, "</uuid>", `</uuid>
  <metadata>
    <imds:instance xmlns:imds="https://imds.dev/libvirt/1">`+imds+`</imds:instance>
  </metadata>`, 1)
	}
	return doc
}

func hasTag(spec *ec2.Instance, key, value string) bool {
	for _, t := range spec.Tags {
		if t.Key == key && t.Value == value {
			return true
		}
	}
	return false
}

func TestLibvirtHook(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	c := admin.NewClient(sock)
	ctx := context.Background()
	hook := func(stdin string, args ...string) (int, string, string) {
		return runLibvirt(t, stdin, append(append([]string{"libvirt", "hook"}, args...), "--admin-socket", sock)...)
	}

	// Operations other than started/migrate/reconnect/stopped/release do nothing.
	for _, op := range []string{"prepare", "start", "stopped"} {
		if code, out, errOut := hook("not xml", "test", op, "begin", "-"); code != 0 || out != "" || errOut != "" {
			t.Fatalf("%s: code %d stdout %q stderr %q", op, code, out, errOut)
		}
	}
	if _, err := c.GetInstanceSpec(ctx, "test"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Fatalf("registered by a no-op: %v", err)
	}

	// started registers the VM.
	doc := libvirtDomain(t, `<imds:role>web-role</imds:role><imds:tag key="env">dev</imds:tag>`)
	if code, out, errOut := hook(doc, "test", "started", "begin", "-"); code != 0 || out != "" || errOut != "" {
		t.Fatalf("started: code %d stdout %q stderr %q", code, out, errOut)
	}
	inst, err := c.GetInstance(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != libvirtTestID || inst.Primary().MAC != "aa:bb:cc:dd:ee:ff" || !inst.MatchMAC || inst.Role == nil || inst.Role.Name != "web-role" || !hasTag(inst, "env", "dev") {
		t.Fatalf("registered %+v", inst)
	}
	// Pinned to the server's host (bolt: the machine's host name), which
	// therefore still answers it.
	if inst.Host == "" || inst.Host != srv.d.Registry.Host {
		t.Errorf("the hook pinned the VM to %q, want the server's host %q", inst.Host, srv.d.Registry.Host)
	}

	// A change made through the admin API survives a restart of the VM;
	// the metadata block's settings win.
	if code, _, errOut := runLibvirt(t, "", "instance", "set", "test", "--instance-type", "t3.small", "--tag", "env=manual", "--admin-socket", sock); code != 0 {
		t.Fatalf("instance set: %s", errOut)
	}
	doc = libvirtDomain(t, `<imds:role>db-role</imds:role><imds:tag key="env">prod</imds:tag><imds:imdsv2>required</imds:imdsv2>`)
	if code, out, errOut := hook(doc, "test", "started", "begin", "-"); code != 0 || out != "" || errOut != "" {
		t.Fatalf("second started: code %d stdout %q stderr %q", code, out, errOut)
	}
	inst, err = c.GetInstance(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != libvirtTestID || inst.Role.Name != "db-role" || !hasTag(inst, "env", "prod") || inst.Metadata.HTTPTokens != "required" || inst.InstanceType != "t3.small" {
		t.Fatalf("updated %+v", inst)
	}

	// stopped (and release) mark it stopped; started again unmarks it.
	for _, op := range []string{"stopped", "release"} {
		if code, out, errOut := hook(doc, "test", op, "end", "-"); code != 0 || out != "" || errOut != "" {
			t.Fatalf("%s: code %d stdout %q stderr %q", op, code, out, errOut)
		}
		spec, err := c.GetInstanceSpec(ctx, "test")
		if err != nil || !hasTag(spec, "imds:state", "stopped") || spec.ID != libvirtTestID {
			t.Fatalf("%s: %+v, %v", op, spec, err)
		}
	}
	if code, _, errOut := hook(doc, "test", "started", "begin", "-"); code != 0 || errOut != "" {
		t.Fatalf("restart: %s", errOut)
	}
	before, err := c.GetInstanceSpec(ctx, "test")
	if err != nil || hasTag(before, "imds:state", "stopped") {
		t.Fatalf("still stopped: %+v, %v", before, err)
	}
	// stopped for an unknown VM does nothing.
	if code, _, errOut := hook("", "other", "stopped", "end", "-"); code != 0 || errOut != "" {
		t.Fatalf("unknown VM stopped: %s", errOut)
	}

	// Malformed XML: a message on stderr, status 0 (the VM must not be
	// stopped by imds), nothing changed; --strict makes it status 1.
	bad := doc[:len(doc)/2]
	code, out, errOut := hook(bad, "test", "started", "begin", "-")
	if code != 0 || out != "" || !strings.Contains(errOut, "imds libvirt hook: test started: domain XML: line ") ||
		!strings.Contains(errOut, "truncated document") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("malformed: code %d stdout %q stderr %q", code, out, errOut)
	}
	code, _, errOut = hook(bad, "test", "started", "begin", "-", "--strict")
	if code != 1 || !strings.Contains(errOut, "imds: domain XML: line ") {
		t.Fatalf("malformed --strict: code %d stderr %q", code, errOut)
	}
	bad = libvirtDomain(t, `<imds:imdsv2>sometimes</imds:imdsv2>`)
	if code, _, errOut := hook(bad, "test", "migrate", "begin", "-"); code != 0 || !strings.Contains(errOut, `must be optional or required, got "sometimes"`) {
		t.Fatalf("bad override: code %d stderr %q", code, errOut)
	}
	after, err := c.GetInstanceSpec(ctx, "test")
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("changed by bad XML:\n%+v\n%+v (%v)", after, before, err)
	}

	// A server that is not running: a message, status 0.
	code, _, errOut = runLibvirt(t, doc, "libvirt", "hook", "test", "started", "begin", "-", "--admin-socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 0 || !strings.Contains(errOut, "imds libvirt hook: test started:") {
		t.Fatalf("no server: code %d stderr %q", code, errOut)
	}
}

func TestLibvirtHookNetwork(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	doc := strings.Replace(libvirtDomain(t, ""), "<interface", `<interface type='network'>
      <mac address='52:54:00:00:00:02'/>
      <source network='imds'/>
    </interface>
    <interface`, 1)
	if code, _, errOut := runLibvirt(t, doc, "libvirt", "hook", "test", "started", "begin", "-", "--network", "imds", "--admin-socket", sock); code != 0 || errOut != "" {
		t.Fatalf("started: %d %s", code, errOut)
	}
	inst, err := admin.NewClient(sock).GetInstance(context.Background(), "test")
	if err != nil || inst.Primary().MAC != "52:54:00:00:00:02" {
		t.Fatalf("%+v, %v", inst, err)
	}
	_, _, errOut := runLibvirt(t, doc, "libvirt", "hook", "test", "started", "begin", "-", "--network", "nope", "--admin-socket", sock)
	if !strings.Contains(errOut, `no <interface> on libvirt network "nope" (interfaces: imds, default)`) {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestLibvirtSpecFromFile(t *testing.T) {
	spec, err := specFromLibvirtFile(libvirtTestDomain, "default")
	if err != nil || spec.Name != "test" || spec.ID != libvirtTestID || spec.Interfaces[0].MAC != "aa:bb:cc:dd:ee:ff" || !spec.MatchMAC {
		t.Fatalf("%+v, %v", spec, err)
	}
	if _, err := specFromLibvirtFile(libvirtTestDomain, "nope"); err == nil || !strings.HasPrefix(err.Error(), libvirtTestDomain+": domain XML: no <interface>") {
		t.Fatalf("err %v", err)
	}
	if _, err := specFromLibvirtFile(filepath.Join(t.TempDir(), "missing.xml"), ""); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestLibvirtInstallHook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hooks", "qemu")
	// The test binary is a go-build temporary, as under go run: refused
	// without --binary.
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path); code != 1 || !strings.Contains(errOut, "go run's temporary build") || !strings.Contains(errOut, "--binary") {
		t.Fatalf("install-hook from a go-build binary: %d %q", code, errOut)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused install-hook wrote %s: %v", path, err)
	}
	bin := filepath.Join(t.TempDir(), "imds")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", filepath.Join(t.TempDir(), "nope")); code != 1 || !strings.Contains(errOut, "--binary ") {
		t.Fatalf("install-hook --binary missing: %d %q", code, errOut)
	}
	// IMDS_ADMIN_SOCKET reaches the hook, which libvirtd runs without it.
	t.Setenv("IMDS_ADMIN_SOCKET", "/run/imds/from-env.sock")
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", bin); code != 0 {
		t.Fatalf("install-hook with IMDS_ADMIN_SOCKET: %s", errOut)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "exec "+bin+" libvirt hook --admin-socket /run/imds/from-env.sock \"$@\"") {
		t.Fatalf("script with IMDS_ADMIN_SOCKET:\n%s", data)
	}
	code, out, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", bin, "--network", "my net", "--admin-socket", "/run/imds/admin.sock")
	if code != 0 || !strings.Contains(out, "wrote "+path) {
		t.Fatalf("install-hook: %d %q %q", code, out, errOut)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	script := string(data)
	if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.Contains(script, ` libvirt hook --network 'my net' --admin-socket /run/imds/admin.sock "$@"`) {
		t.Fatalf("script:\n%s", script)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	// Ours: replaced. Someone else's: refused unless --force.
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", bin); code != 0 {
		t.Fatalf("reinstall: %s", errOut)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", bin); code != 1 || !strings.Contains(errOut, "was not written by imds") {
		t.Fatalf("foreign hook: %d %q", code, errOut)
	}
	if data, _ := os.ReadFile(path); string(data) != "#!/bin/sh\necho mine\n" {
		t.Fatalf("foreign hook changed: %q", data)
	}
	if code, _, errOut := runLibvirt(t, "", "libvirt", "install-hook", "--path", path, "--binary", bin, "--force"); code != 0 {
		t.Fatalf("--force: %s", errOut)
	}
}

// TestInstanceAddFromLibvirt registers a domain by hand from its XML.
func TestInstanceAddFromLibvirt(t *testing.T) {
	srv := mustRunServer(t, "", "")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"instance", "add", "--from-libvirt", filepath.Join("..", "..", "internal", "libvirt", "testdata", "test-domain.xml"),
		"-o", "json", "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"instance_id": "i-04fbe0879f5844d57"`) || !strings.Contains(out.String(), "aa:bb:cc:dd:ee:ff") {
		t.Errorf("instance add --from-libvirt printed:\n%s", out.String())
	}
	out.Reset()
	errOut.Reset()
	bad := filepath.Join(t.TempDir(), "bad.xml")
	os.WriteFile(bad, []byte("<domain><name>x</name>"), 0o644)
	if code := run(context.Background(), []string{"instance", "add", "--from-libvirt", bad, "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "domain XML") {
		t.Errorf("bad XML: exit %d, %q", code, errOut.String())
	}
}

// TestInstanceUpload keeps md_server's POST /instance-upload working for
// hooks written for it, and only from the host itself.
func TestInstanceUpload(t *testing.T) {
	srv := mustRunServer(t, "", "")
	xml, err := os.ReadFile(filepath.Join("..", "..", "internal", "libvirt", "testdata", "test-domain.xml"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL+"/instance-upload", "application/xml", bytes.NewReader(xml))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload from the host: status %d", resp.StatusCode)
	}
	inst, err := srv.d.Registry.GetInstance(context.Background(), "test")
	if err != nil || inst.ID != "i-04fbe0879f5844d57" || inst.Host != srv.d.Registry.Host {
		t.Errorf("after the upload (want it pinned to %q): %v %v", srv.d.Registry.Host, inst, err)
	}
	resp, _ = http.Post(srv.URL+"/instance-upload", "application/xml", strings.NewReader("<domain>"))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("malformed XML: status %d, want 400", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/instance-upload")
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
}
