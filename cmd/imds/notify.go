package main

import (
	"log/slog"

	"github.com/imdsdev/imds/internal/sdnotify"
)

// notifySystemd tells systemd (Type=notify units) the daemon's state; it
// does nothing when not run by systemd. A failure is logged, not fatal:
// systemd then times the start out and says so itself.
func notifySystemd(log *slog.Logger, state string) {
	if sent, err := sdnotify.Notify(state); err != nil {
		log.Warn("cannot notify systemd", "state", state, "err", err)
	} else if sent {
		log.Debug("notified systemd", "state", state)
	}
}
