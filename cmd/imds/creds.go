package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/config"
)

// Until the admin API exists, `imds creds rotate` reaches the server through
// its data directory: it leaves the role name in a request file and sends
// SIGUSR1 to the PID in the pidfile, which also records the process start
// time so that a recycled PID is never signalled.
const (
	pidFileName     = "imds.pid"
	rotateRequest   = "rotate-request"
	rotationTimeout = 5 * time.Second
)

func newCredsCommand() *cobra.Command {
	c := &cobra.Command{Use: "creds", Short: "Manage the credentials a running server hands out"}
	var dataDir string
	rotate := &cobra.Command{
		Use:   "rotate [ROLE]",
		Short: "Replace the credentials of ROLE (all roles without one) in the running server now",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			role := ""
			if len(args) == 1 {
				role = args[0]
			}
			dir := firstNonEmpty(dataDir, defaultDataDir())
			pid, err := requestRotation(dir, role)
			if err != nil {
				return err
			}
			what := "every role"
			if role != "" {
				what = "role " + role
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rotated the credentials of %s (server pid %d)\n", what, pid)
			return err
		},
	}
	rotate.Flags().StringVar(&dataDir, "data-dir", "", "data `directory` of the server (env IMDS_DATA_DIR)")
	c.AddCommand(rotate)
	return c
}

// requestRotation asks the server owning dir to rotate role and waits until
// it has taken the request.
func requestRotation(dir, role string) (int, error) {
	pid, err := readPidFile(filepath.Join(dir, pidFileName))
	if err != nil {
		return 0, fmt.Errorf("no running server found for data directory %s: %w", dir, err)
	}
	req := filepath.Join(dir, rotateRequest)
	if err := os.WriteFile(req, []byte(role+"\n"), 0o600); err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		os.Remove(req)
		return 0, fmt.Errorf("signalling server pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(rotationTimeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(req); errors.Is(err, os.ErrNotExist) {
			return pid, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(req)
	return 0, fmt.Errorf("server pid %d did not take the rotation request within %s", pid, rotationTimeout)
}

// processStart returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat), which together with the PID names a process
// uniquely.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces; fields are counted after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return f[19], nil
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("%s: malformed pidfile", path)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: malformed pid %q", path, f[0])
	}
	if start, err := processStart(pid); err != nil || start != f[1] {
		return 0, fmt.Errorf("%s: server pid %d is no longer running", path, pid)
	}
	return pid, nil
}

// watchRotations writes the pidfile and serves rotation requests.
func (d *daemon) watchRotations() error {
	start, err := processStart(os.Getpid())
	if err != nil {
		return fmt.Errorf("reading own process start time: %w", err)
	}
	pidFile := filepath.Join(d.dataDir, pidFileName)
	if err := writeFileAtomic(pidFile, []byte(fmt.Sprintf("%d %s\n", os.Getpid(), start)), 0o644); err != nil {
		return fmt.Errorf("writing pidfile: %w", err)
	}
	d.rotations = make(chan os.Signal, 1)
	d.rotationsDone = make(chan struct{})
	signal.Notify(d.rotations, syscall.SIGUSR1)
	go func() {
		defer close(d.rotationsDone)
		for range d.rotations {
			d.handleRotation()
		}
	}()
	return nil
}

func (d *daemon) handleRotation() {
	req := filepath.Join(d.dataDir, rotateRequest)
	b, err := os.ReadFile(req)
	if err != nil {
		return // the signal was for another server in this process, or spurious
	}
	os.Remove(req)
	role := strings.TrimSpace(string(b))
	found := d.roles.Rotate(role)
	if !found {
		// A fake role nobody has asked for yet: its first credentials will be new anyway.
		list, _ := d.registry.ListInstances(context.Background())
		for _, inst := range list {
			if inst.Role != nil && (role == "" || role == inst.Role.Name) {
				found = true
			}
		}
	}
	if !found {
		d.log.Warn("credential rotation requested for an unknown role", "role", role)
		return
	}
	d.log.Info("credential rotation requested", "role", firstNonEmpty(role, "*"))
}

func (d *daemon) stopRotations() {
	if d.rotations == nil {
		return
	}
	signal.Stop(d.rotations)
	close(d.rotations)
	<-d.rotationsDone
	pidFile := filepath.Join(d.dataDir, pidFileName)
	if pid, err := readPidFile(pidFile); err == nil && pid == os.Getpid() {
		os.Remove(pidFile)
	}
}

// writeFileAtomic writes data to path through a temporary file and a rename,
// so that a reader never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// warnReadableSecrets warns when the config file holds secret keys but other
// users may read it.
func warnReadableSecrets(logger *slog.Logger, path string, file *config.File) {
	if path == "" {
		return
	}
	for _, r := range file.Roles {
		if r.SecretAccessKey == "" {
			continue
		}
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			logger.Warn("the config file holds secret keys but other users can read it; run chmod 600 on it",
				"file", path, "mode", fmt.Sprintf("%04o", st.Mode().Perm()), "role", r.Name)
		}
		return
	}
}
