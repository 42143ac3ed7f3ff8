package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/daemon"
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
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
	f.StringVar(&cfg.ConfigPath, "config", "", "YAML configuration `file` (env IMDS_CONFIG)")
	f.StringArrayVar(&cfg.Listen, "listen", nil, "`address` to serve metadata on, repeatable (default 127.0.0.1:1338; env IMDS_LISTEN, comma-separated)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "`directory` for the signing key and state (default /var/lib/imds as root, else $XDG_DATA_HOME/imds; env IMDS_DATA_DIR)")
	f.StringVar(&cfg.IMDSv2, "imdsv2", "", "IMDSv2 `mode` of the instance: optional or required (env IMDS_IMDSV2)")
	f.StringVar(&cfg.LogLevel, "log-level", "", "log `level`: debug, info, warn or error (env IMDS_LOG_LEVEL)")
	f.StringVar(&cfg.LogFormat, "log-format", "", "log `format`: text or json (env IMDS_LOG_FORMAT)")
	f.StringVar(&cfg.AdminSocket, "admin-socket", "", "Unix `socket` of the admin API (default "+admin.DefaultSocket()+"; env IMDS_ADMIN_SOCKET)")
	return cmd
}

// applyEnv sets every flag the user did not give from IMDS_<FLAG>, so that
// containers and systemd units can configure imds without a command line.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		name := "IMDS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if f.Changed || !ok {
			return
		}
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
