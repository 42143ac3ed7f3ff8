//go:build !linux

package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// errUnsupportedOS is what every function returns outside Linux.
var errUnsupportedOS = fmt.Errorf("imds net is only available on Linux; on macOS see docs: %w", errors.ErrUnsupported)

func up(context.Context, Plan, string) ([]Change, error) { return nil, errUnsupportedOS }

func down(context.Context, []string, string) ([]Change, error) { return nil, errUnsupportedOS }

func downBridges(context.Context, []string, []string, string) ([]Change, error) {
	return nil, errUnsupportedOS
}

func status(context.Context, StatusOptions) (*Report, error) { return nil, errUnsupportedOS }

// DialContext dials address from inside the named network namespace; only
// on Linux.
func DialContext(context.Context, string, string, string) (net.Conn, error) {
	return nil, errUnsupportedOS
}

// InNetns runs fn inside the named network namespace; only on Linux.
func InNetns(string, func() error) error { return errUnsupportedOS }
