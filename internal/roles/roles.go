// Package roles builds the credential refreshers of a config file's roles
// (static keys, the AWS SDK, a credential process) and serves on-demand
// rotation for the admin API.
package roles

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds"
	"github.com/imdsdev/imds/internal/creds/awssdk"
	"github.com/imdsdev/imds/internal/creds/process"
	"github.com/imdsdev/imds/internal/creds/static"
	"github.com/imdsdev/imds/internal/ec2"
)

// NewSource builds the credential source of a role from its configuration.
func NewSource(ctx context.Context, r config.Role) (ec2.CredentialSource, error) {
	switch r.Source {
	case config.SourceStatic:
		return static.New(r.AccessKeyID, r.SecretAccessKey, r.SessionToken, os.Getenv)
	case config.SourceAWS:
		return awssdk.New(ctx, awssdk.Config{
			Profile: r.Profile, Region: r.Region, RoleARN: r.RoleARN, ExternalID: r.ExternalID,
			SessionName: r.SessionName, Duration: r.Duration, SourceProfile: r.SourceProfile,
		})
	case config.SourceProcess:
		argv := r.Command
		if argv == nil {
			var err error
			if argv, err = process.SplitCommand(r.CommandLine); err != nil {
				return nil, err
			}
		}
		return process.New(argv, r.Timeout)
	}
	return nil, fmt.Errorf("unknown source %q", r.Source)
}

// New builds a refresher for every role of the file whose credentials come
// from outside; the others are served by fallback. Start the result.
func New(ctx context.Context, file *config.File, fallback ec2.CredentialProvider, logger *slog.Logger, clk clock.Clock) (*creds.Roles, error) {
	var refreshers []*creds.Refresher
	for _, r := range file.Roles {
		if r.Source == config.SourceFake {
			continue
		}
		src, err := NewSource(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: roles.%s: %w", file.Name(), r.Line, r.Name, err)
		}
		ref := creds.NewRefresher(r.Name, src)
		ref.Logger, ref.Clock, ref.Kind = logger, clk, r.Source
		refreshers = append(refreshers, ref)
	}
	return creds.NewRoles(fallback, refreshers...), nil
}

// Rotator serves credential rotations for the admin API.
type Rotator struct {
	Roles *creds.Roles
	// Instances tell a fake role nobody has asked for from an unknown one.
	Instances interface {
		ListInstances(ctx context.Context) ([]*ec2.Instance, error)
	}
	Logger *slog.Logger
}

var _ ec2.CredentialRotator = Rotator{}

// RotateCredentials implements ec2.CredentialRotator.
func (r Rotator) RotateCredentials(ctx context.Context, role string) error {
	found := r.Roles.Rotate(role)
	if !found {
		// A fake role nobody has asked for yet: its first credentials will be
		// new anyway, but the name must exist.
		list, err := r.Instances.ListInstances(ctx)
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
	what := role
	if what == "" {
		what = "*"
	}
	r.Logger.Info("credentials rotated on request", "role", what)
	return nil
}

// WarnReadableSecrets warns when the config file at path holds secret keys
// but other users may read it.
func WarnReadableSecrets(logger *slog.Logger, path string, file *config.File) {
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
