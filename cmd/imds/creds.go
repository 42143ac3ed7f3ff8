package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

func newCredsCommand() *cobra.Command {
	c := &cobra.Command{Use: "creds", Short: "Manage the credentials a running server hands out"}
	af := &adminFlags{}
	af.register(c.PersistentFlags())
	c.AddCommand(&cobra.Command{
		Use:   "rotate [ROLE]",
		Short: "Replace the credentials of ROLE (all roles without one) in the running server now",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			role := ""
			if len(args) == 1 {
				role = args[0]
			}
			if err := client.RotateCredentials(cmd.Context(), role); err != nil {
				return cliError(err)
			}
			what := "every role"
			if role != "" {
				what = "role " + role
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rotated the credentials of %s\n", what)
			return err
		},
	})
	return c
}

// rotator serves credential rotations for the admin API.
type rotator struct {
	roles    *creds.Roles
	registry *registry.Registry
	log      *slog.Logger
}

var _ ec2.CredentialRotator = rotator{}

// RotateCredentials implements ec2.CredentialRotator.
func (r rotator) RotateCredentials(ctx context.Context, role string) error {
	found := r.roles.Rotate(role)
	if !found {
		// A fake role nobody has asked for yet: its first credentials will be
		// new anyway, but the name must exist.
		list, err := r.registry.ListInstances(ctx)
		if err != nil {
			return err
		}
		for _, inst := range list {
			if inst.Role != nil && (role == "" || role == inst.Role.Name) {
				found = true
			}
		}
	}
	if !found {
		return ec2.Errorf(ec2.ENOTFOUND, "no instance has role %q", role)
	}
	r.log.Info("credentials rotated on request", "role", firstNonEmpty(role, "*"))
	return nil
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
