package sdnotify_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/sdnotify"
)

// listen opens a datagram socket standing in for systemd's.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b[:n])
}

func TestNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	sent, err := sdnotify.Notify(sdnotify.Ready + "\nSTATUS=serving")
	if err != nil || !sent {
		t.Fatalf("Notify: sent=%v err=%v, want sent", sent, err)
	}
	if got, want := read(t, c), "READY=1\nSTATUS=serving"; got != want {
		t.Errorf("systemd got %q, want %q", got, want)
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := "imds-sdnotify-test-" + strconv.Itoa(os.Getpid())
	c := listen(t, "\x00"+name)
	if err := sdnotify.Send("@"+name, sdnotify.Stopping); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "STOPPING=1" {
		t.Errorf("systemd got %q, want STOPPING=1", got)
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := sdnotify.Notify(sdnotify.Ready); sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET: sent=%v err=%v, want neither", sent, err)
	}
}

func TestSendErrors(t *testing.T) {
	for _, tt := range []struct{ name, socket, state string }{
		{"relative socket", "notify", sdnotify.Ready},
		{"empty state", "/nonexistent/notify", ""},
		{"NUL in state", "/nonexistent/notify", "READY=1\x00"},
		{"nobody listening", filepath.Join(t.TempDir(), "none"), sdnotify.Ready},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := sdnotify.Send(tt.socket, tt.state); err == nil {
				t.Errorf("Send(%q, %q) = nil, want an error", tt.socket, tt.state)
			}
		})
	}
}
