//go:build unix

package admin

import (
	"fmt"
	"os"
	"syscall"
)

// checkSocketDir refuses a directory that someone else could use to swap our
// socket for theirs: one owned by another user (root excepted), or writable
// by others without the sticky bit.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("admin socket directory %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := uint32(os.Geteuid()); st.Uid != uid && st.Uid != 0 {
			return fmt.Errorf("admin socket directory %s belongs to uid %d, not to us (uid %d): choose another --admin-socket", dir, st.Uid, uid)
		}
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("admin socket directory %s is writable by other users: choose another --admin-socket", dir)
	}
	return nil
}
