package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket can be bound to on every
// platform imds supports (sun_path is 104 bytes on the BSDs, 108 on Linux).
const maxSocketPath = 103

// listenUnix listens on a Unix socket at path that only our user can
// connect to, or with group set only our user and that group's members.
// The socket is bound under a temporary name, restricted to 0600 (0660 and
// the group) and then linked to path, so that nobody can connect in
// between; path is never overwritten, so a server that starts at the same
// moment cannot be displaced.
func listenUnix(path, group string) (net.Listener, os.FileInfo, error) {
	if len(path) > maxSocketPath {
		return nil, nil, fmt.Errorf("admin socket path %s is too long (%d bytes; at most %d)", path, len(path), maxSocketPath)
	}
	gid, mode := -1, os.FileMode(0o600)
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, nil, fmt.Errorf("admin socket group: %w", err)
		}
		mode = 0o660
	}
	dir := filepath.Dir(path)
	if err := makeSocketDir(dir, gid); err != nil {
		return nil, nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if err := checkSocketDir(dir); err != nil {
		return nil, nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}

	var nonce [4]byte
	rand.Read(nonce[:])
	// Unique without a package-level counter: the process and 32 random bits.
	tmp := filepath.Join(dir, "."+strconv.Itoa(os.Getpid())+"."+hex.EncodeToString(nonce[:])+".sock")
	direct := len(tmp) > maxSocketPath
	bind := tmp
	if direct {
		// No room for a temporary name: bind path itself and restrict it
		// right away (its directory is usually ours and 0700 anyway).
		bind = path
	} else {
		os.Remove(tmp)
	}
	ln, err := net.Listen("unix", bind)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("admin socket %s is in use", path)
		}
		return nil, nil, fmt.Errorf("admin socket: %w", err)
	}
	// We remove the file ourselves, only if it is still ours.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, os.FileInfo, error) {
		ln.Close()
		os.Remove(bind)
		return nil, nil, err
	}
	if gid >= 0 {
		if err := os.Lchown(bind, -1, gid); err != nil {
			return fail(fmt.Errorf("admin socket group %s: %w (is this user a member?)", group, err))
		}
	}
	if err := os.Chmod(bind, mode); err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	if !direct {
		err := os.Link(tmp, path)
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			ln.Close()
			return nil, nil, fmt.Errorf("admin socket %s is in use", path)
		} else if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("admin socket: %w", err)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	return ln, fi, nil
}

// makeSocketDir creates dir if missing: 0700, or 0750 with group gid (>= 0)
// so that the group's members can reach the socket in it. An existing
// directory is left as it is (a systemd RuntimeDirectory, say).
func makeSocketDir(dir string, gid int) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if gid < 0 {
		return os.MkdirAll(dir, 0o700)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Lchown(dir, -1, gid)
}

// lookupGroup returns the ID of the group named (or numbered) group.
func lookupGroup(group string) (int, error) {
	if id, err := strconv.Atoi(group); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// removeStaleSocket removes a socket file left at path by a server that is
// gone; a server answering there, or a file that is not a socket, is an
// error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("admin socket path %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s is in use: is another imds serve running?", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket %s exists and cannot be checked: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale admin socket: %w", err)
	}
	return nil
}

// removeSocket removes path if it is still the socket file fi.
func removeSocket(path string, fi os.FileInfo) {
	if fi == nil {
		return
	}
	if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, fi) {
		os.Remove(path)
	}
}

// DefaultSocket is where `imds serve` puts its admin socket and where the
// other commands look for it: $XDG_RUNTIME_DIR/imds/admin.sock when the
// session has a runtime directory, /run/imds/admin.sock as root, and
// /tmp/imds-UID/admin.sock otherwise.
func DefaultSocket() string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "imds", "admin.sock")
	}
	if os.Geteuid() == 0 {
		return "/run/imds/admin.sock"
	}
	return filepath.Join("/tmp", "imds-"+strconv.Itoa(os.Getuid()), "admin.sock")
}
