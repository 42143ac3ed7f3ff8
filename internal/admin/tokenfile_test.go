package admin

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReadTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		private bool
		want    string
		wantErr string
	}{
		{name: "one line", content: "s3cret\n", mode: 0o600, private: true, want: "s3cret"},
		{name: "readable by others, client side", content: "s3cret", mode: 0o644, want: "s3cret"},
		{name: "readable by others, server side", content: "s3cret", mode: 0o644, private: true, wantErr: "chmod 600"},
		{name: "empty", content: "\n", mode: 0o600, wantErr: "one line"},
		{name: "two lines", content: "a\nb\n", mode: 0o600, wantErr: "one line"},
		{name: "too large", content: strings.Repeat("x", maxTokenFile+1), mode: 0o600, wantErr: "one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tt.mode)
			got, err := ReadTokenFile(path, tt.private)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("err=%v, want one with %q and without the token", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ReadTokenFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := ReadTokenFile(filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Error("a missing file gave no error")
	}
}

func TestDefaultSocket(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	if got, want := DefaultSocket(), "/run/user/4242/imds/admin.sock"; got != want {
		t.Errorf("with XDG_RUNTIME_DIR: %q, want %q", got, want)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	want := "/tmp/imds-" + strconv.Itoa(os.Getuid()) + "/admin.sock"
	if os.Geteuid() == 0 {
		want = "/run/imds/admin.sock"
	}
	if got := DefaultSocket(); got != want {
		t.Errorf("without XDG_RUNTIME_DIR: %q, want %q", got, want)
	}
}
