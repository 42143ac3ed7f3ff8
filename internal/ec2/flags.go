package ec2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// The settings `imds instance add|set` take as flags, and the dashboard as
// form fields, checked the same way so that both say the same thing. The
// errors name the value, not the flag: the caller prefixes it ("--ip: ").

// ParseSourceAddr checks a source address and returns its canonical form.
func ParseSourceAddr(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%q is not an IP address", s)
	}
	return a.String(), nil
}

// ParseMACAddr checks a MAC address and returns it lower-case, colon
// separated.
func ParseMACAddr(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address like 02:00:00:00:00:01", s)
	}
	return hw.String(), nil
}

// ParseTagEdit reads KEY=VALUE and, when removable, KEY- (remove the tag).
func ParseTagEdit(t string, removable bool) (TagEdit, error) {
	if key, ok := strings.CutSuffix(t, "-"); removable && ok && key != "" && !strings.Contains(t, "=") {
		return TagEdit{Key: key, Remove: true}, nil
	}
	key, value, ok := strings.Cut(t, "=")
	if !ok || key == "" {
		if removable {
			return TagEdit{}, fmt.Errorf("%q must be KEY=VALUE, or KEY- to remove a tag", t)
		}
		return TagEdit{}, fmt.Errorf("%q must be KEY=VALUE", t)
	}
	return TagEdit{Key: key, Value: value}, nil
}

// CheckTokensMode checks an IMDSv2 mode.
func CheckTokensMode(s string) error {
	if s != TokensOptional && s != TokensRequired {
		return fmt.Errorf("must be optional or required, got %q", s)
	}
	return nil
}

// CheckNotEmpty refuses an empty instance type or region.
func CheckNotEmpty(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// CheckHostName checks the name of an imds host (store.etcd.host, an
// instance's host): what a host name may be, and nothing that would break
// an etcd key or a table column.
func CheckHostName(s string) error {
	if s == "" || len(s) > 253 || strings.ContainsAny(s, "/ \t\r\n") {
		return fmt.Errorf("must be a host name without / or spaces, got %q", s)
	}
	return nil
}
