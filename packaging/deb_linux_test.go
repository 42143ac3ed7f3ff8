//go:build linux

package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// debVersion is the version the test stamps on its package.
const debVersion = "v0.0.1-pkgtest"

// TestDebianPackage builds the .deb with make deb, installs it with dpkg into
// a fresh Debian 12 root booted with systemd in a container (its own network
// namespace), and checks what a user of the package sees: files and modes,
// the user, the conffile, the units (systemd-analyze verify, started,
// sd_notify, reload), the metadata address, the CLI for group members, an
// upgrade over itself that keeps a modified conffile, remove and purge with
// nothing left behind.
func TestDebianPackage(t *testing.T) {
	needDocker(t)
	image := baseImage(t)
	deb := buildDeb(t)
	c := bootSystemd(t, image)

	before := c.snapshot(t)
	c.run(t, "mkdir", "-p", "/var/tmp/imds-pkg")
	run(t, "", nil, "docker", "cp", deb, c.name+":/var/tmp/imds-pkg/imds.deb")
	c.run(t, "dpkg", "-i", "/var/tmp/imds-pkg/imds.deb")
	// The snapshot sees what the package adds (else its purge check is void).
	if added, _ := diffLines(before, c.snapshot(t)); !slices.Contains(added, "/usr/bin/imds 755 root:root") || !slices.Contains(added, "/var/lib/imds 750 imds:imds") {
		t.Fatalf("the snapshot after install lacks the package's files; added:\n%s", strings.Join(added, "\n"))
	}

	t.Run("files", func(t *testing.T) {
		want := map[string]string{
			"/usr/bin/imds":                                            "755 root:root",
			"/etc/imds/imds.yaml":                                      "640 root:imds",
			"/lib/systemd/system/imds.service":                         "644 root:root",
			"/lib/systemd/system/imds-net.service":                     "644 root:root",
			"/usr/share/bash-completion/completions/imds":              "644 root:root",
			"/usr/share/zsh/vendor-completions/_imds":                  "644 root:root",
			"/usr/share/fish/vendor_completions.d/imds.fish":           "644 root:root",
			"/usr/share/man/man1/imds-serve.1.gz":                      "644 root:root",
			"/usr/share/doc/imds/install.md":                           "644 root:root",
			"/var/lib/imds":                                            "750 imds:imds",
			"/run/imds":                                                "750 imds:imds",
			"/run/imds/admin.sock":                                     "660 imds:imds",
			"/run/imds-net":                                            "700 root:root",
			"/etc/systemd/system/multi-user.target.wants/imds.service": "777 root:root",
		}
		for path, w := range want {
			if got := strings.TrimSpace(c.run(t, "stat", "-c", "%a %U:%G", path)); got != w {
				t.Errorf("%s: %s, want %s", path, got, w)
			}
		}
		if got := c.run(t, "cat", "/var/lib/dpkg/info/imds.conffiles"); strings.TrimSpace(got) != "/etc/imds/imds.yaml" {
			t.Errorf("conffiles=%q, want /etc/imds/imds.yaml", got)
		}
		// A system user without a login.
		pw := strings.Split(strings.TrimSpace(c.run(t, "getent", "passwd", "imds")), ":")
		if len(pw) != 7 || pw[5] != "/var/lib/imds" || pw[6] != "/usr/sbin/nologin" || len(pw[2]) > 3 {
			t.Errorf("user imds: %v, want a system user (uid < 1000) with home /var/lib/imds and no login", pw)
		}
		if v := c.run(t, "imds", "version"); !strings.Contains(v, "imds "+debVersion) {
			t.Errorf("imds version=%q, want %s", v, debVersion)
		}
		c.run(t, "sh", "-c", "man_page=$(zcat /usr/share/man/man1/imds-net-up.1.gz) && echo \"$man_page\" | grep -q -- '--hold'")
	})

	t.Run("units", func(t *testing.T) {
		c.run(t, "systemd-analyze", "verify", "--man=no", "/lib/systemd/system/imds.service", "/lib/systemd/system/imds-net.service")
		for _, u := range []string{"imds-net.service", "imds.service"} {
			if st := strings.TrimSpace(c.try("systemctl", "is-active", u)); st != "active" {
				t.Errorf("%s is %s, want active:\n%s", u, st, c.try("journalctl", "-u", u, "--no-pager"))
			}
		}
		// Active under Type=notify means READY=1 arrived.
		props := c.run(t, "systemctl", "show", "imds.service", "-p", "Type", "-p", "MainPID", "-p", "NRestarts")
		if !strings.Contains(props, "Type=notify") || !strings.Contains(props, "NRestarts=0") {
			t.Errorf("imds.service: %s", props)
		}
		pid := regexp.MustCompile(`MainPID=(\d+)`).FindStringSubmatch(props)
		if pid == nil || pid[1] == "0" {
			t.Fatalf("imds.service has no main process: %s", props)
		}
		status := c.run(t, "cat", "/proc/"+pid[1]+"/status")
		for _, w := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(status, w) {
				t.Errorf("imds serve process lacks %q:\n%s", w, status)
			}
		}
		if u := strings.TrimSpace(c.run(t, "ps", "-o", "user=", "-p", pid[1])); u != "imds" {
			t.Errorf("imds serve runs as %q, want imds", u)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		id := c.run(t, "curl", "-sf", "--max-time", "10", "http://169.254.169.254/latest/meta-data/instance-id")
		if !regexp.MustCompile(`^i-[0-9a-f]{17}$`).MatchString(id) {
			t.Errorf("instance-id via 169.254.169.254 = %q", id)
		}
		// Group members use the CLI without root; others cannot.
		c.run(t, "useradd", "--create-home", "--groups", "imds", "alice")
		c.run(t, "useradd", "--create-home", "bob")
		list := c.run(t, "runuser", "-u", "alice", "--", "imds", "instance", "list", "--admin-socket", "/run/imds/admin.sock")
		if !strings.Contains(list, "default") {
			t.Errorf("imds instance list as a member of imds: %s", list)
		}
		if out, err := c.tryErr("runuser", "-u", "bob", "--", "imds", "instance", "list", "--admin-socket", "/run/imds/admin.sock"); err == nil {
			t.Errorf("imds instance list as a non-member succeeded: %s", out)
		}
		c.run(t, "userdel", "--remove", "alice")
		c.run(t, "userdel", "--remove", "bob")

		c.run(t, "systemctl", "reload", "imds.service")
		waitFor(t, "the reload in the journal", 30*time.Second, func() (bool, string) {
			j := c.try("journalctl", "-u", "imds.service", "--no-pager", "-o", "cat")
			return strings.Contains(j, "configuration reloaded"), j
		})
		// Stopping imds leaves imds-net's record, which net down needs.
		c.run(t, "systemctl", "stop", "imds.service")
		c.run(t, "test", "-s", "/run/imds-net/net-host.json")
		c.run(t, "systemctl", "start", "imds.service")
	})

	t.Run("upgrade keeps a modified conffile", func(t *testing.T) {
		c.run(t, "sh", "-c", "echo '# changed by the administrator' >> /etc/imds/imds.yaml")
		c.run(t, "dpkg", "-i", "/var/tmp/imds-pkg/imds.deb")
		if conf := c.run(t, "cat", "/etc/imds/imds.yaml"); !strings.Contains(conf, "# changed by the administrator") {
			t.Errorf("conffile replaced on upgrade")
		}
		if st := strings.TrimSpace(c.try("systemctl", "is-active", "imds.service")); st != "active" {
			t.Errorf("imds.service after upgrade: %s", st)
		}
		c.run(t, "curl", "-sf", "--max-time", "10", "http://169.254.169.254/latest/meta-data/instance-id")
	})

	t.Run("remove and purge", func(t *testing.T) {
		c.run(t, "dpkg", "--remove", "imds")
		if out := c.try("nft", "list", "table", "inet", "imds"); !strings.Contains(out, "No such file") {
			t.Errorf("table inet imds after remove (prerm must run net down):\n%s", out)
		}
		if addrs := c.run(t, "ip", "-o", "addr", "show", "dev", "lo"); strings.Contains(addrs, "169.254.169.254") {
			t.Errorf("metadata address still on lo after remove:\n%s", addrs)
		}
		c.run(t, "test", "-f", "/etc/imds/imds.yaml") // remove keeps conffiles
		c.run(t, "dpkg", "--purge", "imds")
		if out, err := c.tryErr("getent", "passwd", "imds"); err == nil {
			t.Errorf("user imds left after purge: %s", out)
		}
		c.run(t, "rm", "-rf", "/var/tmp/imds-pkg")
		after := c.snapshot(t)
		if added, removed := diffLines(before, after); len(added)+len(removed) > 0 {
			t.Errorf("purge left the root changed:\nadded:\n  %s\nremoved:\n  %s", strings.Join(added, "\n  "), strings.Join(removed, "\n  "))
		}
	})
}

// buildDeb runs make deb and returns the package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	start := time.Now()
	run(t, repoRoot, nil, "make", "-s", "deb", "VERSION="+debVersion, "DEB_ARCH=amd64")
	deb, err := filepath.Abs(filepath.Join(repoRoot, "dist", "imds_"+strings.ReplaceAll(strings.TrimPrefix(debVersion, "v"), "-", ".")+"_amd64.deb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb made no %s: %v", deb, err)
	}
	t.Cleanup(func() { os.Remove(deb) })
	t.Logf("make deb: %s in %v", filepath.Base(deb), time.Since(start).Round(time.Second))
	return deb
}

// container is a running container the test made.
type container struct{ name string }

// bootSystemd starts image with systemd as PID 1 in a container of its own
// network namespace (no network but lo) and waits until it has booted.
func bootSystemd(t *testing.T, image string) *container {
	t.Helper()
	c := &container{name: fmt.Sprintf("imds-test-deb-%d", os.Getpid())}
	tryRun("", nil, "docker", "rm", "-f", c.name)
	// systemd needs CAP_SYS_ADMIN for the units' sandboxing (mount
	// namespaces) and its own cgroup namespace; --privileged is not needed.
	run(t, "", nil, "docker", "run", "-d", "--name", c.name, "--network", "none",
		"--cgroupns", "private", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "-e", "container=docker",
		image, "/lib/systemd/systemd")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := tryRun("", nil, "docker", "exec", c.name, "journalctl", "--no-pager", "-n", "80")
			t.Logf("journal of %s:\n%s", c.name, out)
		}
		tryRun("", nil, "docker", "rm", "-f", c.name)
	})
	waitFor(t, "systemd to boot in the container", 90*time.Second, func() (bool, string) {
		st := strings.TrimSpace(c.try("systemctl", "is-system-running"))
		return st == "running" || st == "degraded", st
	})
	return c
}

func (c *container) run(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "", nil, "docker", append([]string{"exec", c.name}, args...)...)
}

func (c *container) try(args ...string) string {
	out, _ := c.tryErr(args...)
	return out
}

func (c *container) tryErr(args ...string) (string, error) {
	return tryRun("", nil, "docker", append([]string{"exec", c.name}, args...)...)
}

// snapshotNoise are paths that change on any running system, whatever a
// package does: logs, dpkg's own bookkeeping, the backups useradd and
// userdel keep of the account files, caches.
var snapshotNoise = regexp.MustCompile(`^(/var/log/|/var/cache/|/var/lib/dpkg/(status|available|lock|triggers|diversions|statoverride|info/format)|/var/lib/systemd/(catalog|random-seed|timers)|/etc/(passwd|group|shadow|gshadow|subuid|subgid)-|/run/(systemd|log|user|lock|initctl|utmp|mount|dbus|sshd)|/tmp/)`)

// snapshot lists every file of the root with mode and owner, plus the
// accounts, for comparing before install and after purge.
func (c *container) snapshot(t *testing.T) []string {
	t.Helper()
	out := c.run(t, "sh", "-c", `find / /run -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -printf '%p %m %u:%g\n' | sort -u; cut -d: -f1,3,4 /etc/passwd /etc/group | sort`)
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !snapshotNoise.MatchString(l) {
			keep = append(keep, l)
		}
	}
	return keep
}

// diffLines returns the lines only in b and only in a.
func diffLines(a, b []string) (added, removed []string) {
	for _, l := range b {
		if !slices.Contains(a, l) {
			added = append(added, l)
		}
	}
	for _, l := range a {
		if !slices.Contains(b, l) {
			removed = append(removed, l)
		}
	}
	return added, removed
}
