package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/atomicfile"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/libvirt"
)

// libvirtHookMarker identifies a hook script written by install-hook.
const libvirtHookMarker = "# Written by `imds libvirt install-hook`"

// specFromLibvirtFile reads a domain XML file (- for standard input) and
// returns the instance spec for it; `imds instance add --from-libvirt`
// uses it.
func specFromLibvirtFile(path, network string) (*ec2.Instance, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	spec, err := libvirt.ParseDomain(r, libvirt.Options{Network: network})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

func newLibvirtCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "libvirt",
		Short: "Register libvirt VMs as instances (a libvirt hook)",
	}
	af.register(c.PersistentFlags())
	c.AddCommand(newLibvirtHookCommand(&af), newLibvirtInstallHookCommand())
	return c
}

func newLibvirtHookCommand(af *adminFlags) *cobra.Command {
	var (
		network string
		strict  bool
	)
	cmd := &cobra.Command{
		Use:   "hook DOMAIN OPERATION [SUB-OPERATION [EXTRA]]",
		Short: "The libvirt qemu hook: registers a VM when it starts, marks it stopped when it stops",
		Long: `The libvirt qemu hook (/etc/libvirt/hooks/qemu; see install-hook). libvirt runs it
as "qemu DOMAIN OPERATION SUB-OPERATION EXTRA" with the domain XML on standard input.

On "started" (the VM has started), "migrate" (an incoming migration) and "reconnect"
(libvirtd restarted while the VM ran), it registers the VM with the running server, or
updates the instance registered before: the name, instance ID (from the domain UUID), MAC
of the interface on --network (with MAC matching) and the settings of the domain's imds
metadata block replace those of the instance; the other settings are kept. It also removes
the imds:state=stopped tag, and pins the instance to the server's host (its store.etcd.host,
else its host name), so that only this host answers it: a migrated VM follows its
hypervisor. A <imds:host> in the metadata block names another host, or none ("").

On "stopped" and "release" it tags the instance imds:state=stopped; the instance stays
registered, so that its name, ID and addresses stay reserved. Other operations do nothing.

The hook never stops a VM: libvirt aborts the start (or the migration) when the hook fails,
even on "started", so a problem (bad XML, server not running) is printed on standard error
and the exit status is 0, unless --strict is given. Nothing is ever written on standard
output, which libvirt would read as a changed domain XML on "migrate".`,
		Example: `  # /etc/libvirt/hooks/qemu
  #!/bin/sh
  exec /usr/local/bin/imds libvirt hook --network default "$@"`,
		Args: needArgs(2, 4, "a DOMAIN and an OPERATION (as libvirt calls its qemu hook)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := libvirtHook(cmd, af, args[0], args[1], network)
			if err == nil {
				return nil
			}
			if strict {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imds libvirt hook: %s %s: %s (ignored: the VM goes on)\n", args[0], args[1], cliMessage(err))
			return nil
		},
	}
	cmd.Flags().StringVar(&network, "network", "default", "libvirt `network` whose interface gives the instance's MAC (\"\" for the first interface)")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit with status 1 on failure (libvirt then aborts the start or the migration)")
	return cmd
}

// libvirtHook does what the hook does for one operation.
func libvirtHook(cmd *cobra.Command, af *adminFlags, domain, op, network string) error {
	var stop bool
	switch op {
	case "started", "migrate", "reconnect":
	case "stopped", "release":
		stop = true
	default:
		return nil
	}
	ctx := cmd.Context()
	if stop {
		c, err := af.client(cmd.Flags())
		if err != nil {
			return err
		}
		return libvirt.MarkStopped(ctx, c, domain)
	}
	d, err := libvirt.Parse(cmd.InOrStdin(), libvirt.Options{Network: network})
	if err != nil {
		return err
	}
	c, err := af.client(cmd.Flags())
	if err != nil {
		return err
	}
	// The VM runs here: pinned to this host, under the name the server
	// goes by (store.etcd.host, else its host name), so that only this
	// host answers it.
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if st.Store != nil {
		d.PinTo(st.Store.Host)
	}
	return libvirt.Register(ctx, c, d)
}

func newLibvirtInstallHookCommand() *cobra.Command {
	var (
		path    string
		network string
		binary  string
		force   bool
	)
	cmd := &cobra.Command{
		Use:   "install-hook",
		Short: "Write the libvirt qemu hook script that runs `imds libvirt hook`",
		Long: `Write the libvirt qemu hook script (mode 0755) that runs this imds binary's
"libvirt hook" with the admin flags given here. An existing hook that was not written
by install-hook is left alone. libvirtd only finds a new hook script when it starts:
restart it (systemctl restart libvirtd, or virtqemud) afterwards.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := hookBinary(binary)
			if err != nil {
				return err
			}
			args := []string{shellQuote(exe), "libvirt", "hook"}
			if cmd.Flags().Changed("network") {
				args = append(args, "--network", shellQuote(network))
			}
			// The flags, or else their environment variables: libvirtd runs
			// the hook with neither this shell's flags nor its environment.
			for _, name := range []string{"admin-socket", "admin-url", "admin-token-file"} {
				v := ""
				if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
					v = f.Value.String()
				} else {
					v = os.Getenv("IMDS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
				}
				if v != "" {
					args = append(args, "--"+name, shellQuote(v))
				}
			}
			script := "#!/bin/sh\n" + libvirtHookMarker + "\n# libvirt runs it as: qemu DOMAIN OPERATION SUB-OPERATION EXTRA, the domain XML on stdin.\nexec " +
				strings.Join(args, " ") + " \"$@\"\n"
			if err := writeHook(path, []byte(script), force); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; restart libvirtd (or virtqemud) so that it runs the hook\n", path)
			return err
		},
	}
	cmd.Flags().StringVar(&path, "path", "/etc/libvirt/hooks/qemu", "`file` of the hook script")
	cmd.Flags().StringVar(&network, "network", "default", "libvirt `network` the hook reads the MAC from (\"\" for the first interface)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing hook that install-hook did not write")
	cmd.Flags().StringVar(&binary, "binary", "", "imds `executable` the hook runs (default: this one, unless go run built it)")
	return cmd
}

// hookBinary is the absolute path of the imds binary the hook runs: binary
// when given, else this executable, unless that is a temporary build of go
// run, which is gone by the time libvirt runs the hook.
func hookBinary(binary string) (string, error) {
	exe := binary
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return "", err
		}
	}
	exe, err := filepath.Abs(exe)
	if err != nil {
		return "", err
	}
	if binary == "" && isGoRunBuild(exe) {
		return "", fmt.Errorf("this imds runs from go run's temporary build %s, which is deleted when it exits; install the binary (make build, then copy dist/imds to /usr/local/bin) and run its install-hook, or give --binary PATH", exe)
	}
	if st, err := os.Stat(exe); err != nil {
		return "", fmt.Errorf("--binary %s: %w", exe, err)
	} else if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("--binary %s: not an executable file", exe)
	}
	return exe, nil
}

// isGoRunBuild tells whether path lies in a go-build temporary directory,
// where go run and go test put the binaries they build.
func isGoRunBuild(path string) bool {
	for _, part := range strings.Split(filepath.ToSlash(path), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}

// writeHook writes the hook script atomically, refusing to replace a hook
// of someone else's unless force.
func writeHook(path string, script []byte, force bool) error {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case !force && !bytes.Contains(old, []byte(libvirtHookMarker)):
		return fmt.Errorf("%s exists and was not written by imds; add `%s` to it yourself, or give --force to replace it",
			path, "imds libvirt hook \"$@\"")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, script, 0o755)
}

// shellQuote quotes s for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:=@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
