//go:build linux

package docker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

// The engine tests run a real imds in a container at 169.254.169.254 on a
// Docker network of their own (169.254.169.0/24, as the ECS local endpoints
// use 169.254.170.0/24), with the engine's socket mounted, and application
// containers beside it that ask with the AWS SDK's IMDS client. Every
// image is built FROM scratch with static binaries: the engine has no
// registry to pull from.

var repoRoot = func() string { r, _ := filepath.Abs("../../.."); return r }()

// e2e holds what one test run created, named with the test's pid.
type e2e struct {
	t                     *testing.T
	prefix                string
	imdsImage, probeImage string
	network               string
	dataDir, confDir      string
	imdsName              string
	admin                 *admin.Client
	imdsBin               string // the static imds, also run on the host as the CLI
}

func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the Docker engine tests build images and run containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("the Docker engine tests need root (the engine's socket)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed: no Docker engine to discover containers from")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v: %s)", err, bytes.TrimSpace(out))
	}
}

func tryRun(dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

func (e *e2e) run(args ...string) string {
	e.t.Helper()
	out, err := tryRun("", nil, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// poll calls f until it says done or 10 s pass, and returns how long it took.
// slowMachineBound is what the "within 1 s" checks tolerate: the target is
// 1 s and the figures on an idle machine are tens of milliseconds, but the
// time measured includes the probe container's own requests, which a
// loaded 2-core machine can delay; the figures are logged either way.
const slowMachineBound = 3 * time.Second

func (e *e2e) poll(what string, f func() (bool, string)) time.Duration {
	e.t.Helper()
	start := time.Now()
	var last string
	for deadline := start.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		if ok, last = f(); ok {
			return time.Since(start)
		}
	}
	e.t.Fatalf("%s: not after 10 s; last: %s", what, last)
	return 0
}

// images builds the imds image (the static binary as /usr/bin/imds, as in
// the release image) and the probe's, FROM scratch, removed at the end.
func (e *e2e) images() {
	t := e.t
	e.imdsImage, e.probeImage = e.prefix+"-imds:test", e.prefix+"-probe:test"
	t.Cleanup(func() { tryRun("", nil, "docker", "image", "rm", "-f", e.imdsImage, e.probeImage) })
	start := time.Now()
	for _, img := range []struct{ name, pkg, bin string }{
		{e.imdsImage, "./cmd/imds", "usr/bin/imds"},
		{e.probeImage, "./internal/discovery/docker/testdata/probe", "probe"},
	} {
		ctx := t.TempDir()
		if _, err := tryRun(repoRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", filepath.Join(ctx, filepath.Base(img.bin)), img.pkg); err != nil {
			t.Fatal(err)
		}
		df := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT [\"/%s\"]\n", filepath.Base(img.bin), img.bin, img.bin)
		if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		e.run("docker", "build", "-q", "-t", img.name, ctx)
		if img.pkg == "./cmd/imds" {
			e.imdsBin = filepath.Join(ctx, "imds")
		}
	}
	t.Logf("images built in %v", time.Since(start).Round(time.Second))
}

func setup(t *testing.T) *e2e {
	needDocker(t)
	e := &e2e{t: t, prefix: fmt.Sprintf("imds-e2e-%d", os.Getpid())}
	e.network, e.imdsName = e.prefix+"-net", e.prefix+"-imds"
	e.images()
	t.Cleanup(func() {
		ids, _ := tryRun("", nil, "docker", "ps", "-aq", "--filter", "name=^"+e.prefix)
		if ids != "" {
			tryRun("", nil, append([]string{"docker", "rm", "-f"}, strings.Fields(ids)...)...)
		}
		tryRun("", nil, "docker", "network", "rm", e.network)
	})
	e.waitSubnetFree()
	e.run("docker", "network", "create", "--subnet", metadataSubnet, "--gateway", "169.254.169.1", e.network)
	e.dataDir, e.confDir = t.TempDir(), t.TempDir()
	conf := fmt.Sprintf(`listen: ["0.0.0.0:80"]
roles:
  role-a: {source: fake}
  role-b: {source: fake}
discovery:
  docker:
    networks: [%s]
`, e.network)
	if err := os.WriteFile(filepath.Join(e.confDir, "imds.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.run("docker", "run", "-d", "--name", e.imdsName, "--network", e.network, "--ip", "169.254.169.254",
		"-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", e.confDir+":/etc/imds:ro", "-v", e.dataDir+":/data",
		e.imdsImage, "serve", "--config", "/etc/imds/imds.yaml", "--data-dir", "/data", "--admin-socket", "/data/admin.sock")
	e.admin = admin.NewClient(filepath.Join(e.dataDir, "admin.sock"))
	e.waitServing()
	return e
}

// waitServing waits until the imds container has synchronised and listens.
func (e *e2e) waitServing() {
	e.t.Helper()
	e.poll("imds serving", func() (bool, string) {
		logs, _ := tryRun("", nil, "docker", "logs", e.imdsName)
		_, err := e.admin.ListInstances(context.Background())
		return err == nil && strings.Contains(logs, "serving instance metadata"), logs
	})
}

// app starts a probe container with labels and returns its ID and address.
func (e *e2e) app(name string, labels ...string) (id, ip string) {
	return e.appWith(name, nil, labels...)
}

func (e *e2e) appWith(name string, opts []string, labels ...string) (id, ip string) {
	e.t.Helper()
	args := append([]string{"docker", "run", "-d", "--name", e.prefix + "-" + name, "--network", e.network}, opts...)
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	id = e.run(append(args, e.probeImage)...)
	ip = e.run("docker", "inspect", "--format", "{{(index .NetworkSettings.Networks \""+e.network+"\").IPAddress}}", id)
	return id, ip
}

type probeResult struct {
	InstanceID  string `json:"instance_id"`
	Role        string `json:"role"`
	AccessKeyID string `json:"access_key_id"`
	Status      int    `json:"status"`
	Error       string `json:"error"`
}

// probe asks the probe container at ip what it gets from 169.254.169.254.
func probe(ip string, query ...string) (probeResult, error) {
	var r probeResult
	c := http.Client{Timeout: 8 * time.Second}
	resp, err := c.Get("http://" + ip + ":8080/probe?" + strings.Join(query, "&"))
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r, err
}

// served waits until the probe at ip gets the instance of container id.
func (e *e2e) served(ip, id, role string) (probeResult, time.Duration) {
	e.t.Helper()
	var got probeResult
	took := e.poll("container "+id[:12]+" served", func() (bool, string) {
		var err error
		got, err = probe(ip)
		return err == nil && got.InstanceID == "i-0"+id[:16] && got.Role == role && got.AccessKeyID != "", fmt.Sprintf("%+v %v", got, err)
	})
	return got, took
}

// dockerInstances are the names of the registry's docker instances.
func (e *e2e) dockerInstances() []string {
	list, err := e.admin.ListInstances(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, inst := range list {
		if inst.Origin == ec2.OriginDocker {
			names = append(names, inst.Name)
		}
	}
	slices.Sort(names)
	return names
}

// labelled are the names docker ps shows of running labelled containers.
func (e *e2e) labelled() []string {
	out := e.run("docker", "ps", "--filter", "label=imds.enable=true", "--filter", "network="+e.network, "--format", "{{.Names}}")
	names := strings.Fields(out)
	slices.Sort(names)
	return names
}

func TestEngine(t *testing.T) {
	e := setup(t)
	idA, ipA := e.app("a", "imds.enable=true", "imds.role=role-a", "imds.tag.team=blue")
	idB, ipB := e.app("b", "imds.enable=true", "imds.role=role-b")
	_, ipC := e.app("c")

	gotA, tookA := e.served(ipA, idA, "role-a")
	gotB, _ := e.served(ipB, idB, "role-b")
	t.Logf("a served %v after docker run returned", tookA)
	if gotA.AccessKeyID == gotB.AccessKeyID {
		t.Errorf("a and b got the same access key %s, want each its own role's", gotA.AccessKeyID)
	}
	e.poll("unlabelled container answered 404", func() (bool, string) {
		got, err := probe(ipC)
		return err == nil && got.Status == http.StatusNotFound && got.InstanceID == "", fmt.Sprintf("%+v %v", got, err)
	})

	t.Run("proxy headers give nothing", func(t *testing.T) {
		// Unsigned identity headers and X-Forwarded-For from a container
		// are no identity: the unlabelled one stays unknown, a labelled one
		// stays itself.
		headers := []string{"xff=" + ipA, "instance=" + e.prefix + "-a"}
		if got, err := probe(ipC, headers...); err != nil || got.InstanceID != "" || (got.Status != http.StatusNotFound && got.Status != http.StatusForbidden) {
			t.Errorf("unlabelled container claiming a: %+v, %v; want 404 or 403 and no instance", got, err)
		}
		if got, err := probe(ipB, headers...); err != nil || (got.InstanceID != "" && got.InstanceID != "i-0"+idB[:16]) || got.AccessKeyID == gotA.AccessKeyID {
			t.Errorf("b claiming a: %+v, %v; want b's own instance or nothing", got, err)
		}
	})

	t.Run("CLI shows the origin", func(t *testing.T) {
		sock := filepath.Join(e.dataDir, "admin.sock")
		out := e.run(e.imdsBin, "instance", "list", "--admin-socket", sock)
		if !strings.Contains(out, e.prefix+"-a") || !strings.Contains(out, "docker") || !strings.Contains(out, ipA) {
			t.Errorf("imds instance list shows no docker instance a at %s:\n%s", ipA, out)
		}
		out, err := tryRun("", nil, e.imdsBin, "instance", "rm", e.prefix+"-a", "--admin-socket", sock)
		if err == nil || !strings.Contains(out, "the Docker engine") {
			t.Errorf("imds instance rm of a container: %v\n%s\nwant a refusal saying the Docker engine owns it", err, out)
		}
		t.Logf("imds instance rm says: %s", out)
	})

	t.Run("rm refused", func(t *testing.T) {
		err := e.admin.RemoveInstance(context.Background(), e.prefix+"-a")
		if ec2.ErrorCode(err) != ec2.EFORBIDDEN || !strings.Contains(err.Error(), "Docker engine") {
			t.Errorf("instance rm of a container: err=%v, want EFORBIDDEN saying the Docker engine owns it", err)
		}
	})

	t.Run("stop removes within 1 s", func(t *testing.T) {
		e.run("docker", "stop", "-t", "1", idB)
		took := e.poll("b's instance gone", func() (bool, string) {
			names := e.dockerInstances()
			return !slices.Contains(names, e.prefix+"-b"), strings.Join(names, " ")
		})
		t.Logf("instance gone %v after docker stop returned", took)
		if took > slowMachineBound {
			t.Errorf("instance gone after %v, want within 1 s (tolerated up to %v on a loaded machine)", took, slowMachineBound)
		}
	})

	t.Run("new container served within 1 s", func(t *testing.T) {
		idD, ipD := e.app("d", "imds.enable=true", "imds.role=role-a")
		_, took := e.served(ipD, idD, "role-a")
		t.Logf("d served %v after docker run returned", took)
		if took > slowMachineBound {
			t.Errorf("new container served after %v, want within 1 s (tolerated up to %v on a loaded machine)", took, slowMachineBound)
		}
	})

	t.Run("restart matches docker ps", func(t *testing.T) {
		e.run("docker", "stop", "-t", "5", e.imdsName)
		e.run("docker", "stop", "-t", "1", idA)
		e.run("docker", "start", idB)
		idE, ipE := e.app("e", "imds.enable=true", "imds.role=role-b")
		e.run("docker", "start", e.imdsName)
		e.waitServing()
		if got, want := e.dockerInstances(), e.labelled(); !slices.Equal(got, want) {
			t.Errorf("after restart the registry has %v, docker ps shows %v", got, want)
		}
		gotE, _ := e.served(ipE, idE, "role-b")

		t.Run("stolen address refused", func(t *testing.T) {
			// A container with NET_ADMIN takes e's address and announces it
			// by ARP: imds sees e's address from another MAC and refuses.
			_, ipT := e.appWith("thief", []string{"--cap-add", "NET_ADMIN"})
			e.poll("thief's probe up", func() (bool, string) { _, err := probe(ipT); return err == nil, fmt.Sprint(err) })
			resp, err := http.Post("http://"+ipT+":8080/steal?addr="+ipE, "", nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("steal: %v %v", resp, err)
			}
			resp.Body.Close()
			var got probeResult
			e.poll("the thief refused with e's address", func() (bool, string) {
				got, err = probe(ipT, "from="+ipE)
				if got.InstanceID == "i-0"+idE[:16] || (got.AccessKeyID != "" && got.AccessKeyID == gotE.AccessKeyID) {
					t.Fatalf("the thief got e's instance: %+v", got)
				}
				return err == nil && got.Status == http.StatusNotFound, fmt.Sprintf("%+v %v", got, err)
			})
			t.Logf("the thief gets: %s", got.Error)
			logs, _ := tryRun("", nil, "docker", "logs", e.imdsName)
			if !strings.Contains(logs, "but the request came from MAC") {
				t.Errorf("imds logged no MAC mismatch:\n%s", logs)
			}
		})
	})
}

// TestCompose runs examples/docker-discovery as docs/containers.md says,
// with the probe as the application image.
func TestCompose(t *testing.T) {
	needDocker(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose not installed: the compose recipe is not run")
	}
	e := &e2e{t: t, prefix: fmt.Sprintf("imds-e2e-%d-compose", os.Getpid())}
	e.images()
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "imds.yaml"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "docker-discovery", f))
		if err != nil {
			t.Fatal(err)
		}
		// The network is the test's own, so that it removes only its own.
		b = bytes.ReplaceAll(b, []byte("networks: [imds-apps]"), []byte("networks: ["+e.prefix+"]"))
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"IMDS_IMAGE=" + e.imdsImage, "APP_IMAGE=" + e.probeImage, "IMDS_NETWORK=" + e.prefix}
	project := strings.ReplaceAll(e.prefix, "-", "")
	compose := func(args ...string) (string, error) {
		return tryRun(dir, env, append([]string{"docker-compose", "-p", project}, args...)...)
	}
	t.Cleanup(func() { compose("down", "-t", "1") })
	e.waitSubnetFree()
	if out, err := compose("up", "-d"); err != nil {
		logs, _ := compose("logs", "imds")
		t.Fatalf("%v\n%s\n%s", err, out, logs)
	}
	service := func(name string) (id, ip string) {
		id, err := compose("ps", "-q", name)
		if err != nil || id == "" {
			t.Fatalf("compose ps %s: %q %v", name, id, err)
		}
		return id, e.run("docker", "inspect", "--format", "{{(index .NetworkSettings.Networks \""+e.prefix+"\").IPAddress}}", id)
	}
	idW, ipW := service("web")
	idK, ipK := service("worker")
	_, ipO := service("other")
	gotW, _ := e.served(ipW, idW, "web-role")
	gotK, _ := e.served(ipK, idK, "worker-role")
	if gotW.AccessKeyID == gotK.AccessKeyID {
		t.Errorf("web and worker share the access key %s", gotW.AccessKeyID)
	}
	e.poll("other answered 404", func() (bool, string) {
		got, err := probe(ipO)
		return err == nil && got.Status == http.StatusNotFound, fmt.Sprintf("%+v %v", got, err)
	})
}

// metadataSubnet is the network that has 169.254.169.254 on it.
const metadataSubnet = "169.254.169.0/24"

// leftoverPID is the pid in the name of a network these tests create
// (imds-e2e-PID-...).
func leftoverPID(network string) (int, bool) {
	rest, ok := strings.CutPrefix(network, "imds-e2e-")
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// waitSubnetFree waits (up to 3 minutes) until no Docker network has
// metadataSubnet: the engine refuses overlapping networks, and another run
// of these tests on the machine may hold it.
func (e *e2e) waitSubnetFree() {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ids, _ := tryRun("", nil, "docker", "network", "ls", "-q")
		holder := ""
		for _, id := range strings.Fields(ids) {
			out, _ := tryRun("", nil, "docker", "network", "inspect", "-f", "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", id)
			if strings.Contains(out, metadataSubnet) {
				holder = strings.Fields(out)[0]
			}
		}
		if holder == "" {
			return
		}
		if pid, ok := leftoverPID(holder); ok && syscall.Kill(pid, 0) != nil {
			// A network of a run that was killed: remove it; a network the
			// engine will not remove (endpoints of containers already gone)
			// only an engine restart clears, which is not the tests' to do.
			if _, err := tryRun("", nil, "docker", "network", "rm", holder); err != nil {
				e.t.Skipf("Docker network %s, left by a killed test run (pid %d), holds %s and the engine refuses to remove it (%v): "+
					"remove it or restart the engine to run these tests", holder, pid, metadataSubnet, err)
			}
			continue
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Docker network %s holds %s, which these tests need, and was not removed in 3 minutes", holder, metadataSubnet)
		}
		time.Sleep(time.Second)
	}
}
