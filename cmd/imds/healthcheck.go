package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// healthTimeout bounds a healthcheck: a HEALTHCHECK or a probe must not hang.
const healthTimeout = 5 * time.Second

// newHealthcheckCommand checks a running server, for a container's
// HEALTHCHECK (the image has no shell and no curl): exit 0 when it is
// healthy, 1 with the reason otherwise.
func newHealthcheckCommand() *cobra.Command {
	var (
		af      adminFlags
		metaURL string
		noAdmin bool
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if a running server answers on its admin API (and, with --url, its metadata listener)",
		Long: `imds healthcheck asks the admin API of a running server whether it is
healthy, and with --url also requests that URL of its metadata listener,
which must answer as imds does (any status: a requester that matches no
instance gets 404, which still means the listener is up). It is meant for
HEALTHCHECK in a container image, which has no shell; it gives up after 5s.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
			defer cancel()
			if noAdmin && metaURL == "" {
				return fmt.Errorf("--no-admin needs --url: nothing to check")
			}
			if !noAdmin {
				c, err := af.client(cmd.Flags())
				if err != nil {
					return err
				}
				if err := c.Health(ctx); err != nil {
					return fmt.Errorf("admin API: %w", err)
				}
			}
			if metaURL != "" {
				if err := probeMetadata(ctx, metaURL); err != nil {
					return err
				}
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return err
		},
	}
	af.register(cmd.Flags())
	cmd.Flags().StringVar(&metaURL, "url", "", "also request this `URL` of the metadata listener, e.g. http://127.0.0.1:1338/")
	cmd.Flags().BoolVar(&noAdmin, "no-admin", false, "do not ask the admin API (check only --url)")
	return cmd
}

// probeMetadata requests u and checks that imds answered it.
func probeMetadata(ctx context.Context, u string) error {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" || pu.Host == "" {
		return fmt.Errorf("--url: must be an http:// URL like http://127.0.0.1:1338/, got %q", u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	// A plain client: no proxy from the environment between us and the server.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("metadata listener: %w", err)
	}
	resp.Body.Close()
	if s := resp.Header.Get("Server"); s != "EC2ws" {
		return fmt.Errorf("metadata listener %s: answered %s from %q, not imds", u, resp.Status, s)
	}
	return nil
}
