// Package roles builds the credential refreshers of a config file's roles
// (static keys, the AWS SDK, a credential process) and serves on-demand
// rotation for the admin API.
package roles

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"

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
	refreshers, _, err := build(ctx, nil, nil, file, logger, clk)
	if err != nil {
		return nil, err
	}
	return creds.NewRoles(fallback, refreshers...), nil
}

// Plan is a set of refreshers for a reloaded file, ready to replace those
// in service (Apply).
type Plan struct {
	roles      *creds.Roles
	refreshers []*creds.Refresher
	// Changed names the roles added, removed or redefined.
	Changed []string
}

// Reload prepares the refreshers of next: a role defined as in prev keeps
// its refresher (and credentials); a new or changed one gets a new source.
// Nothing changes until Apply, so a role that cannot be built leaves every
// role as it was.
func Reload(ctx context.Context, rs *creds.Roles, prev, next *config.File, logger *slog.Logger, clk clock.Clock) (*Plan, error) {
	refreshers, changed, err := build(ctx, rs, prev, next, logger, clk)
	if err != nil {
		return nil, err
	}
	return &Plan{roles: rs, refreshers: refreshers, Changed: changed}, nil
}

// Apply starts the plan's new refreshers, then runs commit (applying what
// uses the roles) and, if it succeeds, puts them in service; if it fails,
// the roles stay as they were (see creds.Roles.Replace).
func (p *Plan) Apply(commit func() error) error { return p.roles.Replace(p.refreshers, commit) }

func build(ctx context.Context, rs *creds.Roles, prev, next *config.File, logger *slog.Logger, clk clock.Clock) ([]*creds.Refresher, []string, error) {
	before := map[string]config.Role{}
	if prev != nil {
		for _, r := range prev.Roles {
			r.Line = 0
			before[r.Name] = r
		}
	}
	var refreshers []*creds.Refresher
	var changed []string
	for _, r := range next.Roles {
		def := r
		def.Line = 0
		old, had := before[r.Name]
		delete(before, r.Name)
		same := had && reflect.DeepEqual(old, def)
		if !same && prev != nil {
			changed = append(changed, r.Name)
		}
		if r.Source == config.SourceFake {
			continue
		}
		if same && rs != nil {
			if ref := rs.Refresher(r.Name); ref != nil {
				refreshers = append(refreshers, ref)
				continue
			}
		}
		src, err := NewSource(ctx, r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: roles.%s: %w", next.Name(), r.Line, r.Name, err)
		}
		ref := creds.NewRefresher(r.Name, src)
		ref.Logger, ref.Clock, ref.Kind = logger, clk, r.Source
		refreshers = append(refreshers, ref)
	}
	for name := range before {
		changed = append(changed, name)
	}
	slices.Sort(changed)
	return refreshers, changed, nil
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
