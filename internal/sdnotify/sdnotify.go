package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Common states. See sd_notify(3).
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket in $NOTIFY_SOCKET. It returns false and
// no error when the variable is unset (not run by systemd, or not as
// Type=notify).
func Notify(state string) (bool, error) {
	socket := os.Getenv("NOTIFY_SOCKET")
	if socket == "" {
		return false, nil
	}
	return true, Send(socket, state)
}

// Send sends state to socket: a path, or an abstract socket name written
// with a leading '@' as systemd does.
func Send(socket, state string) error {
	if socket == "" || (socket[0] != '/' && socket[0] != '@') {
		return fmt.Errorf("NOTIFY_SOCKET %q: must be an absolute path or an @abstract name", socket)
	}
	if state == "" || strings.ContainsRune(state, 0) {
		return fmt.Errorf("sd_notify state %q: must be non-empty VAR=value lines", state)
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if socket[0] == '@' {
		addr.Name = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
