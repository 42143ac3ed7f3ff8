package static

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

const (
	userKeyID  = "AKIAIOSFODNN7EXAMPLE"
	tempKeyID  = "ASIAIOSFODNN7EXAMPLE"
	secret     = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	token      = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/="
	markSecret = "SECRETMARKERwJalrXUtnFEMIK7MDENG" // never expected in any output
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func noEnv(k string) string { return "" }

func TestExplicitKeys(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Second)
	s, err := New(userKeyID, secret, "", env(map[string]string{EnvAccessKeyID: tempKeyID, EnvSecretAccessKey: markSecret}))
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	c, err := s.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != userKeyID || c.SecretAccessKey != secret || c.SessionToken != "" {
		t.Errorf("Retrieve=%v, want the explicit keys and no token (env ignored)", c)
	}
	if !c.Expiration.IsZero() {
		t.Errorf("Expiration=%v, want zero", c.Expiration)
	}
	if c.LastUpdated.Before(before) || c.LastUpdated.After(after) {
		t.Errorf("LastUpdated=%v, want the time of New (%v…%v)", c.LastUpdated, before, after)
	}
	// Later retrievals serve the same set, stamped at New.
	s.Now = func() time.Time { return after.Add(time.Hour) }
	if c2, _ := s.Retrieve(context.Background()); c2 != c {
		t.Errorf("second Retrieve=%v, want %v", c2, c)
	}
}

func TestExplicitTemporaryKeys(t *testing.T) {
	s, err := New(tempKeyID, secret, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := s.Retrieve(context.Background())
	if c.AccessKeyID != tempKeyID || c.SecretAccessKey != secret || c.SessionToken != token {
		t.Errorf("Retrieve=%v, want the explicit temporary keys", c)
	}
}

func TestEnvFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want ec2.Credentials
	}{
		{"user", map[string]string{EnvAccessKeyID: userKeyID, EnvSecretAccessKey: secret},
			ec2.Credentials{AccessKeyID: userKeyID, SecretAccessKey: secret}},
		{"temporary", map[string]string{EnvAccessKeyID: tempKeyID, EnvSecretAccessKey: secret, EnvSessionToken: token},
			ec2.Credentials{AccessKeyID: tempKeyID, SecretAccessKey: secret, SessionToken: token}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New("", "", "", env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Retrieve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			c.LastUpdated = time.Time{}
			if c != tc.want {
				t.Errorf("Retrieve=%v, want %v", c, tc.want)
			}
		})
	}
}

func TestEnvFallbackOSGetenv(t *testing.T) {
	t.Setenv(EnvAccessKeyID, userKeyID)
	t.Setenv(EnvSecretAccessKey, secret)
	t.Setenv(EnvSessionToken, "")
	s, err := New("", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Retrieve(context.Background()); c.AccessKeyID != userKeyID || c.SecretAccessKey != secret {
		t.Errorf("Retrieve=%v, want the keys from the environment", c)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name              string
		id, secret, token string
		env               map[string]string
		want              string // in the error
		secretsInTheInput []string
	}{
		{name: "nothing", want: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"},
		{name: "token alone", token: markSecret, want: "session token needs an access key ID", secretsInTheInput: []string{markSecret}},
		{name: "no secret", id: userKeyID, want: "secret access key is required"},
		{name: "no key ID", secret: markSecret, want: "access key ID is required", secretsInTheInput: []string{markSecret}},
		{name: "env no secret", env: map[string]string{EnvAccessKeyID: userKeyID}, want: "AWS_SECRET_ACCESS_KEY is required"},
		{name: "env no key ID", env: map[string]string{EnvSecretAccessKey: markSecret}, want: "AWS_ACCESS_KEY_ID is required", secretsInTheInput: []string{markSecret}},
		{name: "lowercase key ID", id: strings.ToLower(userKeyID), secret: secret, want: "access key ID is not an access key ID"},
		{name: "AIDA", id: "AIDAIOSFODNN7EXAMPLE", secret: secret, want: "want AKIA or ASIA"},
		{name: "AROA", id: "AROAIOSFODNN7EXAMPLE", secret: secret, want: "want AKIA or ASIA"},
		{name: "short key ID", id: "AKIA1234", secret: secret, want: "got 8 characters"},
		{name: "long key ID", id: "AKIA" + strings.Repeat("A", 125), secret: secret, want: "got 129 characters"},
		// Keys swapped by mistake: the secret is in the key ID field and must not be shown.
		{name: "swapped", id: markSecret, secret: userKeyID, want: "access key ID is not an access key ID", secretsInTheInput: []string{markSecret}},
		{name: "secret with newline", id: userKeyID, secret: markSecret + "\n", want: "secret access key is not a secret access key", secretsInTheInput: []string{markSecret}},
		{name: "env secret with newline", env: map[string]string{EnvAccessKeyID: userKeyID, EnvSecretAccessKey: markSecret + "\n"}, want: "AWS_SECRET_ACCESS_KEY is not a secret access key: want 16 to 128 of A-Z, a-z, 0-9, +, / and =, got 33 characters with leading or trailing whitespace", secretsInTheInput: []string{markSecret}},
		{name: "short secret", id: userKeyID, secret: "SECRETMARK", want: "got 10 characters", secretsInTheInput: []string{"SECRETMARK"}},
		{name: "secret bad char", id: userKeyID, secret: markSecret + "-x", want: "is not a secret access key", secretsInTheInput: []string{markSecret}},
		{name: "temporary without token", id: tempKeyID, secret: markSecret, want: "session token is required: access key ID is a temporary (ASIA) key", secretsInTheInput: []string{markSecret}},
		{name: "env temporary without token", env: map[string]string{EnvAccessKeyID: tempKeyID, EnvSecretAccessKey: markSecret}, want: "AWS_SESSION_TOKEN is required", secretsInTheInput: []string{markSecret}},
		{name: "user key with token", id: userKeyID, secret: secret, token: markSecret, want: "session token must be empty: access key ID is a long-term (AKIA) key", secretsInTheInput: []string{markSecret, secret}},
		{name: "env stale token", env: map[string]string{EnvAccessKeyID: userKeyID, EnvSecretAccessKey: secret, EnvSessionToken: markSecret}, want: "AWS_SESSION_TOKEN must be empty", secretsInTheInput: []string{markSecret, secret}},
		{name: "token with space", id: tempKeyID, secret: secret, token: markSecret + " x", want: "session token contains whitespace", secretsInTheInput: []string{markSecret, secret}},
		{name: "token too long", id: tempKeyID, secret: secret, token: strings.Repeat(markSecret, 1000), want: "session token is longer than", secretsInTheInput: []string{markSecret, secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.id, tc.secret, tc.token, env(tc.env))
			if err == nil {
				t.Fatalf("New succeeded: %v", s)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			if !strings.HasPrefix(msg, "static credentials: ") {
				t.Errorf("error %q lacks the package prefix", msg)
			}
			for _, sec := range append(tc.secretsInTheInput, markSecret, secret) {
				if strings.Contains(msg, sec) {
					t.Errorf("error %q shows a secret", msg)
				}
			}
		})
	}
}

func TestStringHidesSecrets(t *testing.T) {
	s, err := New(tempKeyID, markSecret, "TOKENMARKER"+token, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "static keys ASIA…MPLE"; got != want {
		t.Errorf("String()=%q, want %q", got, want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		for _, arg := range []any{s, *s, struct{ S Source }{*s}, []*Source{s}} {
			out := fmt.Sprintf(verb, arg)
			if strings.Contains(out, markSecret) || strings.Contains(out, "TOKENMARKER") ||
				strings.Contains(strings.ToLower(out), strings.ToLower(fmt.Sprintf("%x", markSecret))) {
				t.Errorf("Sprintf(%q, %T) = %q shows a secret", verb, arg, out)
			}
		}
	}
	if got := (Source{}).String(); got != "static keys (none)" {
		t.Errorf("zero String()=%q", got)
	}
}

func TestZeroSourceAndCanceledContext(t *testing.T) {
	if _, err := new(Source).Retrieve(context.Background()); err == nil {
		t.Error("zero Source retrieved credentials")
	}
	s, _ := New(userKeyID, secret, "", noEnv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Retrieve(ctx); err != context.Canceled {
		t.Errorf("Retrieve with a canceled context: %v", err)
	}
}
