// Package static serves fixed AWS keys, such as an IAM user's, as the
// credentials of a role.
//
// Only real access key IDs are accepted: AKIA… for long-term keys (an IAM
// user's), which must come without a session token, and ASIA… for temporary
// keys (from STS), which must come with one. AWS's other unique-ID prefixes
// (AIDA… for users, AROA… for roles) name principals, not keys, and are
// refused. Key IDs are 16 to 128 characters of A–Z and 0–9; secrets are 16 to
// 128 characters of the base64 alphabet (real ones are 40).
//
// Secrets never appear in errors or in the String of a Source.
package static

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Environment variables New reads when it is given no keys.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// maxSessionToken bounds a session token; STS tokens are a few kilobytes.
const maxSessionToken = 16 << 10

var (
	keyIDPattern  = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{12,124}$`)
	secretPattern = regexp.MustCompile(`^[A-Za-z0-9+/=]{16,128}$`)
)

// Source serves fixed keys (e.g. an IAM user's) as a role's credentials. It
// implements ec2.CredentialSource. The zero Source has no keys; use New.
type Source struct {
	// Now is the clock. New sets it to time.Now and stamps LastUpdated with it.
	Now func() time.Time

	// creds sits behind a pointer so that printing a Source by reflection
	// (which bypasses its methods for unexported fields) shows an address,
	// never a secret.
	creds *ec2.Credentials
}

var _ ec2.CredentialSource = (*Source)(nil)

// New validates the keys and returns a Source serving them. An empty
// accessKeyID and secretAccessKey mean: read AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN with getenv (os.Getenv when
// nil). LastUpdated of the credentials is the time New was called. Errors
// name the field or variable at fault but never show a secret or a key ID
// that failed validation (it may be a secret pasted in the wrong place).
func New(accessKeyID, secretAccessKey, sessionToken string, getenv func(string) string) (*Source, error) {
	names := [3]string{"access key ID", "secret access key", "session token"}
	if accessKeyID == "" && secretAccessKey == "" {
		if sessionToken != "" {
			return nil, errors.New("static credentials: a session token needs an access key ID and a secret access key")
		}
		if getenv == nil {
			getenv = os.Getenv
		}
		accessKeyID, secretAccessKey, sessionToken = getenv(EnvAccessKeyID), getenv(EnvSecretAccessKey), getenv(EnvSessionToken)
		names = [3]string{EnvAccessKeyID, EnvSecretAccessKey, EnvSessionToken}
		if accessKeyID == "" && secretAccessKey == "" {
			return nil, fmt.Errorf("static credentials: no keys given and %s and %s are not set", EnvAccessKeyID, EnvSecretAccessKey)
		}
	}
	if err := validate(accessKeyID, secretAccessKey, sessionToken, names); err != nil {
		return nil, fmt.Errorf("static credentials: %w", err)
	}
	s := &Source{Now: time.Now}
	s.creds = &ec2.Credentials{
		AccessKeyID:     accessKeyID,
		SecretAccessKey: secretAccessKey,
		SessionToken:    sessionToken,
		LastUpdated:     s.Now().UTC().Truncate(time.Second),
	}
	return s, nil
}

func validate(id, secret, token string, names [3]string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s is required with %s", names[0], names[1])
	case secret == "":
		return fmt.Errorf("%s is required with %s", names[1], names[0])
	case !keyIDPattern.MatchString(id):
		return fmt.Errorf("%s is not an access key ID: want AKIA or ASIA and 12 to 124 more of A-Z and 0-9, got %s", names[0], describe(id))
	case !secretPattern.MatchString(secret):
		return fmt.Errorf("%s is not a secret access key: want 16 to 128 of A-Z, a-z, 0-9, +, / and =, got %s", names[1], describe(secret))
	}
	temporary := strings.HasPrefix(id, "ASIA")
	switch {
	case temporary && token == "":
		return fmt.Errorf("%s is required: %s is a temporary (ASIA) key", names[2], names[0])
	case !temporary && token != "":
		return fmt.Errorf("%s must be empty: %s is a long-term (AKIA) key", names[2], names[0])
	case len(token) > maxSessionToken:
		return fmt.Errorf("%s is longer than %d bytes", names[2], maxSessionToken)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%s contains whitespace, a control character or non-ASCII", names[2])
		}
	}
	return nil
}

// describe tells what is wrong with a value without showing any of it.
func describe(v string) string {
	n := fmt.Sprintf("%d characters", len(v))
	if strings.TrimSpace(v) != v {
		return n + " with leading or trailing whitespace"
	}
	return n
}

// Retrieve returns the keys. Expiration is zero: static keys do not expire,
// so the refresher serves them with a rolling Expiration.
func (s *Source) Retrieve(ctx context.Context) (ec2.Credentials, error) {
	if s.creds == nil {
		return ec2.Credentials{}, errors.New("static credentials: no keys (Source not made by New)")
	}
	if err := ctx.Err(); err != nil {
		return ec2.Credentials{}, err
	}
	return *s.creds, nil
}

// String shows the first and last four characters of the key ID, like
// "static keys AKIA…XYZ1", and nothing of the secret.
func (s Source) String() string {
	if s.creds == nil {
		return "static keys (none)"
	}
	id := s.creds.AccessKeyID
	return "static keys " + id[:4] + "…" + id[len(id)-4:]
}

// GoString is String, for %#v.
func (s Source) GoString() string { return s.String() }

// Format prints String for every verb, so that no verb (%d, %x, %+v…) can
// reach the secret through reflection.
func (s Source) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }
