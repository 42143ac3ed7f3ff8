package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to exit after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// child is a server process started by the benchmark. Only processes in a
// child are ever signalled, by their own PID.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // exit status; read only after done is closed
}

// startChild starts path with args; stdout and stderr may be nil (discard).
func startChild(name, path string, args, env []string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop terminates the child (SIGTERM, then SIGKILL after stopGrace) and
// waits for it. It is safe to call on a child that already exited.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = c.cmd.Process.Kill()
	}
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// children stops, in reverse order, every child added to it.
type children []*child

func (cs *children) add(c *child) { *cs = append(*cs, c) }

// stopAll has a pointer receiver so that `defer cs.stopAll()` sees the
// children added after the defer statement.
func (cs *children) stopAll() {
	for i := len(*cs) - 1; i >= 0; i-- {
		(*cs)[i].stop()
	}
}

// waitReady calls probe until it succeeds, the child exits, or timeout.
func waitReady(ctx context.Context, c *child, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited before accepting requests: %v", c.name, c.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w", c.name, timeout, err)
		case <-tick.C:
		}
	}
}

// dialProbe succeeds once something accepts TCP connections on addr.
func dialProbe(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// freeAddrs returns n distinct free TCP addresses on 127.0.0.1. All
// listeners are held until every port is picked, so the n ports differ.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// buildIMDS builds ./cmd/imds of the enclosing module into dir.
func buildIMDS(ctx context.Context, dir string, log io.Writer) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locate the module (go env GOMOD): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("not inside the imds module: run from the repository or pass -imds PATH")
	}
	out := filepath.Join(dir, "imds")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/imds")
	cmd.Dir = root
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build imds (go build ./cmd/imds in %s): %w", root, err)
	}
	return out, nil
}
