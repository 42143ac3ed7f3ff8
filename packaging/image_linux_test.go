//go:build linux

package packaging

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// clientOutput is what examples/compose/client prints.
type clientOutput struct {
	InstanceID  string `json:"instance_id"`
	Region      string `json:"region"`
	AccessKeyID string `json:"access_key_id"`
	Expires     string `json:"expires"`
}

// images builds the imds image (make image) and the example client's image
// FROM scratch, under names of the test's own, removed at the end.
func images(t *testing.T) (imdsImage, clientImage string) {
	t.Helper()
	base := baseImage(t)
	imdsImage = fmt.Sprintf("imds-test:%d", os.Getpid())
	clientImage = fmt.Sprintf("imds-test-client:%d", os.Getpid())
	t.Cleanup(func() { tryRun("", nil, "docker", "image", "rm", "-f", imdsImage, clientImage) })
	start := time.Now()
	run(t, repoRoot, nil, "make", "-s", "image", "IMAGE="+imdsImage, "IMAGE_LATEST=", "BASE_IMAGE="+base)
	ctx := t.TempDir()
	run(t, repoRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(ctx, "client"), "./examples/compose/client")
	df, err := os.ReadFile(filepath.Join(repoRoot, "examples", "compose", "client", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "docker", "build", "-q", "-t", clientImage, ctx)
	t.Logf("images built in %v", time.Since(start).Round(time.Second))
	return imdsImage, clientImage
}

// TestImage runs the image as a user would: FROM scratch with only the
// binary, CA certificates and a non-root user, healthy by its HEALTHCHECK,
// serving a client container (FROM scratch, the AWS SDK's IMDS client)
// its own identity by address; then the compose example.
func TestImage(t *testing.T) {
	needDocker(t)
	imdsImage, clientImage := images(t)

	t.Run("contents", func(t *testing.T) {
		var cfg struct {
			Config struct {
				User       string
				Entrypoint []string
				Cmd        []string
				Env        []string
			}
		}
		out := run(t, "", nil, "docker", "image", "inspect", "--format", "{{json .}}", imdsImage)
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/bin/imds"}) || !slices.Equal(cfg.Config.Cmd, []string{"serve"}) ||
			!slices.Contains(cfg.Config.Env, "IMDS_LISTEN=0.0.0.0:1338") {
			t.Errorf("image config %+v, want user 65532, imds serve on 0.0.0.0:1338", cfg.Config)
		}
		name := fmt.Sprintf("imds-test-export-%d", os.Getpid())
		defer tryRun("", nil, "docker", "rm", "-f", name)
		run(t, "", nil, "docker", "create", "--name", name, imdsImage)
		tarFile := filepath.Join(t.TempDir(), "fs.tar")
		run(t, "", nil, "docker", "export", "-o", tarFile, name)
		// Docker adds mount points and .dockerenv to every container.
		added := []string{".dockerenv", "dev/console", "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf"}
		var files []string
		for _, f := range strings.Split(run(t, "", nil, "tar", "-tf", tarFile), "\n") {
			if f != "" && !strings.HasSuffix(f, "/") && !slices.Contains(added, f) {
				files = append(files, f)
			}
		}
		slices.Sort(files)
		if want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/bin/imds"}; !slices.Equal(files, want) {
			t.Errorf("image files %v, want only %v", files, want)
		}
	})

	t.Run("client by address", func(t *testing.T) {
		netName := fmt.Sprintf("imds-test-net-%d", os.Getpid())
		// Fixed addresses need a subnet of ours: the first free of a few.
		var pfx netip.Prefix
		for i := range 8 {
			p := netip.MustParsePrefix(fmt.Sprintf("10.231.%d.0/24", (os.Getpid()+i)%250))
			if _, err := tryRun("", nil, "docker", "network", "create", "--subnet", p.String(), netName); err == nil {
				pfx = p
				break
			}
		}
		if !pfx.IsValid() {
			t.Fatalf("docker network create %s: no free subnet among 10.231.x.0/24", netName)
		}
		t.Cleanup(func() { tryRun("", nil, "docker", "network", "rm", netName) })
		imdsIP, clientIP := addrAt(pfx, 200), addrAt(pfx, 201)
		dir := t.TempDir()
		conf := fmt.Sprintf("instances:\n  - name: client\n    instance_id: i-0c000000000000001\n    source_addresses: [%s]\n    role: client-role\n    region: ap-southeast-2\n", clientIP)
		if err := os.WriteFile(filepath.Join(dir, "imds.yaml"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("imds-test-server-%d", os.Getpid())
		t.Cleanup(func() { tryRun("", nil, "docker", "rm", "-f", name) })
		run(t, "", nil, "docker", "run", "-d", "--name", name, "--network", netName, "--ip", imdsIP.String(),
			"--health-interval", "1s", "-v", dir+":/etc/imds:ro", imdsImage, "serve", "--config", "/etc/imds/imds.yaml")
		waitFor(t, "the imds container to be healthy", 60*time.Second, func() (bool, string) {
			out, _ := tryRun("", nil, "docker", "inspect", "--format", "{{.State.Health.Status}}", name)
			return strings.TrimSpace(out) == "healthy", out
		})
		out := run(t, "", nil, "docker", "run", "--rm", "--network", netName, "--ip", clientIP.String(),
			"-e", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://"+imdsIP.String()+":1338", clientImage)
		got := parseClient(t, out)
		if got.InstanceID != "i-0c000000000000001" || got.Region != "ap-southeast-2" || !strings.HasPrefix(got.AccessKeyID, "ASIA") {
			t.Errorf("client got %+v, want its own instance, region and ASIA credentials", got)
		}
		// Another address is nobody.
		if out, err := tryRun("", nil, "docker", "run", "--rm", "--network", netName, "-e", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://"+imdsIP.String()+":1338",
			"-e", "CLIENT_TIMEOUT=3s", clientImage); err == nil || !strings.Contains(out, "giving up") {
			t.Errorf("a client at an unknown address got an identity: %s", out)
		}
	})

	t.Run("compose example", func(t *testing.T) {
		composeExample(t, imdsImage, clientImage)
	})
}

// composeExample brings examples/compose up with docker-compose: the apps
// read their own identity at 169.254.169.254 through the host's DNAT, and
// down leaves the host as it was.
func composeExample(t *testing.T, imdsImage, clientImage string) {
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose not installed (Debian's docker-compose package)")
	}
	// The example changes the host's own nftables and lo; it must not
	// meddle with a setup that is already there.
	if out, err := tryRun("", nil, "nft", "list", "table", "inet", "imds"); err == nil {
		t.Skipf("the host already has table inet imds (imds net up is in use here); the compose example would replace it:\n%s", out)
	}
	hostState := func() string {
		lo, _ := tryRun("", nil, "ip", "-o", "addr", "show", "dev", "lo")
		tables, _ := tryRun("", nil, "nft", "list", "tables")
		return lo + tables
	}
	before := hostState()
	if out, err := tryRun("", nil, "ip", "-o", "link", "show", "br-imds-demo"); err == nil {
		t.Skipf("a bridge br-imds-demo exists already (another run of the example?): %s", out)
	}
	dir := filepath.Join(repoRoot, "examples", "compose")
	project := fmt.Sprintf("imdstest%d", os.Getpid())
	env := []string{"IMDS_IMAGE=" + imdsImage, "APP_IMAGE=" + clientImage}
	dc := func(args ...string) (string, error) {
		return tryRun(dir, env, compose, append([]string{"-p", project}, args...)...)
	}
	t.Cleanup(func() { dc("down", "--timeout", "30") })
	// Another checkout's run of this test may hold the example's subnet
	// for a while (the engine refuses overlapping networks): wait for it.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		out, err := dc("up", "-d")
		if err == nil {
			break
		}
		if !strings.Contains(out, "Pool overlaps") || time.Now().After(deadline) {
			t.Fatalf("docker-compose up: %v\n%s", err, out)
		}
		dc("down", "--timeout", "30")
		time.Sleep(2 * time.Second)
	}
	for _, app := range []struct{ service, id, region string }{
		{"app-1", "i-0a000000000000001", "us-east-1"},
		{"app-2", "i-0a000000000000002", "eu-west-1"},
	} {
		id, err := dc("ps", "-q", app.service)
		if err != nil || strings.TrimSpace(id) == "" {
			t.Fatalf("docker-compose ps %s: %v %s", app.service, err, id)
		}
		id = strings.TrimSpace(id)
		code := run(t, "", nil, "timeout", "90", "docker", "wait", id)
		logs := run(t, "", nil, "docker", "logs", id)
		if strings.TrimSpace(code) != "0" {
			all, _ := dc("logs", "--no-color")
			t.Fatalf("%s exited %s: %s\n%s", app.service, code, logs, all)
		}
		got := parseClient(t, logs)
		if got.InstanceID != app.id || got.Region != app.region || !strings.HasPrefix(got.AccessKeyID, "ASIA") {
			t.Errorf("%s read %+v at 169.254.169.254, want instance %s in %s with ASIA credentials", app.service, got, app.id, app.region)
		}
	}
	if out, err := dc("down", "--timeout", "30"); err != nil {
		t.Fatalf("docker-compose down: %v\n%s", err, out)
	}
	if after := hostState(); after != before {
		t.Errorf("docker-compose down left the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// addrAt returns the n-th address of p.
func addrAt(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func parseClient(t *testing.T, out string) clientOutput {
	t.Helper()
	var c clientOutput
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &c); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return c
}
