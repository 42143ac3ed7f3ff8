package main

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

// newSource builds the credential source of a role from its configuration.
func newSource(ctx context.Context, r config.Role) (ec2.CredentialSource, error) {
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

// newRoles builds a refresher for every role of the file whose credentials
// come from outside; the others are served by fallback.
func newRoles(ctx context.Context, file *config.File, fallback ec2.CredentialProvider, logger *slog.Logger, clk clock.Clock) (*creds.Roles, error) {
	var refreshers []*creds.Refresher
	for _, r := range file.Roles {
		if r.Source == config.SourceFake {
			continue
		}
		src, err := newSource(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: roles.%s: %w", file.Name(), r.Line, r.Name, err)
		}
		ref := creds.NewRefresher(r.Name, src)
		ref.Logger = logger
		ref.Clock = clk
		refreshers = append(refreshers, ref)
	}
	return creds.NewRoles(fallback, refreshers...), nil
}
