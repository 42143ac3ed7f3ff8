// Package sdnotify tells systemd about a service's state with the
// sd_notify protocol: a datagram of newline-separated VAR=value lines
// ("READY=1", "STOPPING=1", "STATUS=...") sent to the Unix socket named by
// $NOTIFY_SOCKET, which systemd sets for units of Type=notify. Without
// that variable every call does nothing, so a service can always call it.
package sdnotify
