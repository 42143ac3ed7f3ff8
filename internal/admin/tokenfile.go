package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTokenFile bounds a token file; a token is a line, not a document.
const maxTokenFile = 4 << 10

// ReadTokenFile reads the bearer token of the admin API on TCP from path:
// one non-empty line. The server passes private, and then refuses a file
// other users may read, since the token grants full control.
func ReadTokenFile(path string, private bool) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if private {
		st, err := f.Stat()
		if err != nil {
			return "", err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s: readable by other users (mode %04o); chmod 600 it", path, st.Mode().Perm())
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	token := strings.TrimSpace(string(b))
	if len(b) > maxTokenFile || token == "" || strings.ContainsAny(token, "\r\n") {
		return "", errors.New(path + " must hold one line with the token")
	}
	return token, nil
}
