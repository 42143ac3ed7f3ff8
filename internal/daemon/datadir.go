package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// checkDataDir refuses a data directory that every user may write to:
// another user could replace its signing key or its database. A directory
// imds creates is 0700, so only one made by someone else is refused.
func checkDataDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // created 0700 by whoever needs it first
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("data directory %s is writable by every user (mode %04o): another user could replace its signing key or database; chmod 700 %s, or choose another --data-dir", dir, st.Mode().Perm(), dir)
	}
	return nil
}
