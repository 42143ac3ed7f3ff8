//go:build linux

package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, from this package's directory.
const repoRoot = ".."

// cmdTimeout bounds every command a test runs.
const cmdTimeout = 4 * time.Minute

// needDocker skips unless the test runs as root with a reachable engine.
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the packaging tests build and run containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("the packaging tests need root (Docker engine, debootstrap)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed: no Docker engine to run the package and image in")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v: %s)", err, bytes.TrimSpace(out))
	}
}

// run runs a command in dir and returns its output; failure ends the test.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// tryRun runs a command and returns its combined output and error.
func tryRun(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), env...)
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.String(), err
}

// baseImage imports the cached Debian 12 root as an image of the test's
// own, removed at the end.
func baseImage(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("debootstrap not installed (scripts/deps.sh installs it): no Debian 12 root to test in")
	}
	name := fmt.Sprintf("imds-test-base:%d", os.Getpid())
	run(t, repoRoot, nil, "./scripts/base-image.sh", name)
	t.Cleanup(func() { tryRun("", nil, "docker", "image", "rm", "-f", name) })
	return name
}

// waitFor polls cond every 200ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
