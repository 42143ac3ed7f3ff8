package roles

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds/fake"
	"github.com/imdsdev/imds/internal/ec2"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func load(t *testing.T, yaml string) (*config.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imds.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return f, path
}

type instances []*ec2.Instance

func (l instances) ListInstances(context.Context) ([]*ec2.Instance, error) { return l, nil }

// TestStaticRole serves a static role's key through New's refresher and
// rotates roles by name.
func TestStaticRole(t *testing.T) {
	file, _ := load(t, "roles:\n  ci:\n    source: static\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock; the test reads only the key
	fakes := fake.New(rand.Reader)
	fakes.Now = clk.Now
	r, err := New(t.Context(), file, fakes, discard, clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.Start(ctx)
	defer func() { cancel(); r.Wait() }()
	inst := &ec2.Instance{Name: "a", Role: &ec2.Role{Name: "ci"}}
	c, err := r.Credentials(ctx, inst, "ci")
	if err != nil || c.AccessKeyID != "AKIAIOSFODNN7EXAMPLE" {
		t.Fatalf("Credentials = %+v, %v; want the static key", c, err)
	}
	rot := Rotator{Roles: r, Instances: instances{inst, {Name: "b", Role: &ec2.Role{Name: "web"}}}, Logger: discard}
	tests := []struct {
		role     string
		wantCode string
	}{
		{role: "ci"}, {role: "web"}, {role: ""}, {role: "nobody", wantCode: ec2.ENOTFOUND},
	}
	for _, tt := range tests {
		if err := rot.RotateCredentials(ctx, tt.role); ec2.ErrorCode(err) != tt.wantCode {
			t.Errorf("RotateCredentials(%q) = %v, want code %q", tt.role, err, tt.wantCode)
		}
	}
}

func TestUnknownSource(t *testing.T) {
	if _, err := NewSource(t.Context(), config.Role{Name: "x", Source: "nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err=%v, want one naming the source", err)
	}
}

func TestWarnReadableSecrets(t *testing.T) {
	file, path := load(t, "roles:\n  ci:\n    source: static\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
	var b strings.Builder
	WarnReadableSecrets(slog.New(slog.NewTextHandler(&b, nil)), path, file)
	if !strings.Contains(b.String(), "chmod 600") || strings.Contains(b.String(), "wJalr") {
		t.Errorf("warning = %q, want chmod advice and no secret", b.String())
	}
	os.Chmod(path, 0o600)
	b.Reset()
	WarnReadableSecrets(slog.New(slog.NewTextHandler(&b, nil)), path, file)
	if b.String() != "" {
		t.Errorf("warned about a private file: %q", b.String())
	}
}
