package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/daemon"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/sdnotify"
)

// newServeCommand is `imds serve`: flags (precedence: flag, then the IMDS_*
// environment variable, then the config file, then the default) into a
// daemon.Config, Open, wait for a signal, Close.
func newServeCommand() *cobra.Command {
	var cfg daemon.Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve instance metadata (127.0.0.1:1338 and one default instance when run without configuration)",
		Long: `Serve the EC2 instance metadata service until SIGTERM or SIGINT.

Without a config file it serves one complete instance, "default", on
127.0.0.1:1338 with rotating fake credentials for the role
` + ec2.DefaultRoleName + `. --config names a YAML file (every key:
docs/configuration.md) that overrides any value of that instance, declares
several instances, roles and VM networks; it is reloaded on SIGHUP and when it
changes. Instances registered at run time (imds instance add) are kept in the
data directory. The CLI reaches the server through the admin socket.

Each setting is taken from the flag, else from its IMDS_* environment
variable, else from the config file, else from the default.`,
		Example: `  imds serve
  imds serve --config /etc/imds/imds.yaml
  imds serve --listen 127.0.0.1:1338 --listen '[::1]:1338' --imdsv2 required
  IMDS_LOG_LEVEL=debug imds serve --data-dir ./state --admin-socket ./admin.sock`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv, err := applyEnv(cmd.Flags())
			if err != nil {
				return err
			}
			if err := checkServeFlags(cfg, fromEnv); err != nil {
				return err
			}
			cfg.Stderr = cmd.ErrOrStderr()
			b := currentBuild()
			cfg.Version, cfg.Commit = b.Version, b.Commit
			d, err := daemon.Open(cfg)
			if err != nil {
				return err
			}
			notifySystemd(d.Logger, sdnotify.Ready) // every listener is open
			<-cmd.Context().Done()
			d.Logger.Info("shutting down")
			notifySystemd(d.Logger, sdnotify.Stopping)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return d.Close(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ConfigPath, "config", "", "YAML configuration `file` (default none: the zero-configuration instance; env IMDS_CONFIG)")
	f.StringArrayVar(&cfg.Listen, "listen", nil, "`address` to serve metadata on, repeatable (default the config's listen, else 127.0.0.1:1338; env IMDS_LISTEN, comma-separated)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "`directory` for the signing key and state (default the config's data_dir, else /var/lib/imds as root, else $XDG_DATA_HOME/imds; env IMDS_DATA_DIR)")
	f.StringVar(&cfg.IMDSv2, "imdsv2", "", "IMDSv2 `mode` of every instance: optional or required (default each instance's imdsv2, which is optional; env IMDS_IMDSV2)")
	f.StringVar(&cfg.LogLevel, "log-level", "", "log `level`: debug, info, warn or error (default the config's log.level, else info; env IMDS_LOG_LEVEL)")
	f.StringVar(&cfg.LogFormat, "log-format", "", "log `format`: text or json (default the config's log.format, else text; env IMDS_LOG_FORMAT)")
	f.StringVar(&cfg.AdminSocket, "admin-socket", "", "Unix `socket` of the admin API (default the config's admin.socket, else "+admin.DefaultSocket()+"; env IMDS_ADMIN_SOCKET)")
	return cmd
}

// applyEnv sets every flag the user did not give from IMDS_<FLAG>, so that
// containers and systemd units can configure imds without a command line.
// It returns the variable each flag was taken from, so that a bad value is
// blamed on the variable, not on a flag the user never typed.
func applyEnv(fs *pflag.FlagSet) (map[string]string, error) {
	var errs []error
	fromEnv := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		name := "IMDS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if f.Changed || !ok {
			return
		}
		fromEnv[f.Name] = name
		vals := []string{v}
		if f.Value.Type() == "stringArray" {
			vals = strings.Split(v, ",")
		}
		for _, v := range vals {
			if err := fs.Set(f.Name, strings.TrimSpace(v)); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s: %w", name, err))
			}
		}
	})
	return fromEnv, errors.Join(errs...)
}

// checkServeFlags checks the values with a fixed form before the server
// starts, each problem naming where the value came from: the flag, or the
// IMDS_* variable applyEnv took it from.
func checkServeFlags(cfg daemon.Config, fromEnv map[string]string) error {
	source := func(flag string) string {
		if env, ok := fromEnv[flag]; ok {
			return "environment variable " + env
		}
		return "--" + flag
	}
	var errs []error
	oneOf := func(flag, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			errs = append(errs, fmt.Errorf("%s: must be %s or %s, got %q", source(flag), strings.Join(allowed[:len(allowed)-1], ", "), allowed[len(allowed)-1], v))
		}
	}
	oneOf("imdsv2", cfg.IMDSv2, ec2.TokensOptional, ec2.TokensRequired)
	oneOf("log-level", cfg.LogLevel, "debug", "info", "warn", "error")
	oneOf("log-format", cfg.LogFormat, "text", "json")
	for _, a := range cfg.Listen {
		_, port, err := net.SplitHostPort(a)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port like 127.0.0.1:1338, got %q", source("listen"), a))
		}
	}
	return errors.Join(errs...)
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
