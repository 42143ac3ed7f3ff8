package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/dashboard"
)

func newDashboardCommand(clk clock.Clock) *cobra.Command {
	var (
		af     adminFlags
		listen string
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard of the running server on 127.0.0.1 and print its one-time login URL",
		Long: `imds dashboard serves a web dashboard of a running server: its instances, their
metadata, requests and reports, events and faults, and the server's roles and
listeners. It talks to the server through the admin API (the socket, or
--admin-url), listens on 127.0.0.1 on a free port, and prints a URL with a
one-time login token; open it in a browser on this machine. It runs until
interrupted.`,
		Example: `  imds dashboard
  imds dashboard --listen 127.0.0.1:8080`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return fmt.Errorf("--listen: %q is not an address:port like 127.0.0.1:0", listen)
			}
			if !ap.Addr().IsLoopback() {
				return fmt.Errorf("--listen: %s is not a loopback address: the dashboard speaks plain HTTP and is for this machine only", ap.Addr())
			}
			client, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			hctx, cancel := context.WithTimeout(ctx, healthTimeout)
			err = client.Health(hctx)
			cancel()
			if err != nil {
				return fmt.Errorf("admin API: %w", err)
			}
			login, token, err := dashboard.NewOneTimeLogin(rand.Reader)
			if err != nil {
				return err
			}
			d := dashboard.New(client, clk, rand.Reader)
			d.Login = login.Check
			d.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			ln, err := net.Listen("tcp", ap.String())
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			srv := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 32 << 10,
				ErrorLog: slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn)}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			printLoginURL(cmd.OutOrStdout(), "http://"+ln.Addr().String()+"/", token)
			select {
			case err := <-done:
				return fmt.Errorf("dashboard: %w", err)
			case <-ctx.Done():
			}
			// Event streams stay open; give them a moment, then cut them.
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	af.register(cmd.Flags())
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback `address:port` to serve on (port 0 picks a free one)")
	return cmd
}

// printLoginURL says where to log in; the token in it works once.
func printLoginURL(w io.Writer, base, token string) {
	fmt.Fprintf(w, "imds dashboard at %s\n", base)
	fmt.Fprintf(w, "Open this URL to log in (it works once):\n\n    %slogin?token=%s\n\n", base, token)
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
}
