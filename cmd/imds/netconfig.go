package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/netsetup"
)

// portFromConfig is the port `imds serve --config path` listens on, so that
// `imds net up --config path` (the imds-net systemd unit) sends the metadata
// address where the server really is. Listen addresses on different ports
// are ambiguous and need --port.
func portFromConfig(path string) (int, error) {
	f, err := config.Load(path)
	if err != nil {
		return 0, err
	}
	port := 0
	for _, l := range f.Listen {
		_, p, err := net.SplitHostPort(l)
		if err != nil {
			return 0, fmt.Errorf("%s: listen %q: %w", path, l, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("%s: listen %q: port 1-65535 needed for imds net up", path, l)
		}
		if port != 0 && n != port {
			return 0, fmt.Errorf("%s: the listen addresses use ports %d and %d: say which with --port", path, port, n)
		}
		port = n
	}
	return port, nil
}

// holdNet waits for the command's context to end (SIGTERM, SIGINT) and
// then undoes what net up set up: `net up --hold` as a container's command
// keeps the host's rules exactly as long as the container runs, so that
// `docker compose down` leaves nothing behind.
func holdNet(cmd *cobra.Command, netns []string, stateDir string) error {
	fmt.Fprintln(cmd.OutOrStdout(), "holding; SIGTERM or SIGINT undoes it")
	<-cmd.Context().Done()
	// The command's context is done: give down its own, bounded one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes, err := netsetup.Down(ctx, netns, stateDir)
	if perr := printChanges(cmd, changes); err == nil {
		err = perr
	}
	return err
}
