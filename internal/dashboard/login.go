package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"sync"
)

// LoginFunc reports whether token lets a browser log in.
type LoginFunc func(token string) bool

// TokenLogin accepts token, as often as it is given: the admin token of the
// admin TCP listener. An empty token accepts nothing.
func TokenLogin(token string) LoginFunc {
	want := sha256.Sum256([]byte(token))
	return func(got string) bool {
		g := sha256.Sum256([]byte(got))
		return token != "" && subtle.ConstantTimeCompare(g[:], want[:]) == 1
	}
}

// OneTimeLogin is a login token that works once: the first browser to show
// it gets a session, and the token is spent.
type OneTimeLogin struct {
	mu    sync.Mutex
	token [32]byte // its hash; zero once spent
	spent bool
}

// NewOneTimeLogin returns a one-time login and its token, read from rand.
func NewOneTimeLogin(rand io.Reader) (*OneTimeLogin, string, error) {
	tok, err := randomToken(rand)
	if err != nil {
		return nil, "", err
	}
	return &OneTimeLogin{token: sha256.Sum256([]byte(tok))}, tok, nil
}

// Check implements LoginFunc: it accepts the token once.
func (l *OneTimeLogin) Check(got string) bool {
	g := sha256.Sum256([]byte(got))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spent || subtle.ConstantTimeCompare(g[:], l.token[:]) != 1 {
		return false
	}
	l.spent, l.token = true, [32]byte{}
	return true
}

// randomToken returns 32 random bytes from rand, base64url encoded.
func randomToken(rand io.Reader) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("dashboard: reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
