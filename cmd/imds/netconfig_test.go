package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPortFromConfig(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       int
		wantErr    string
	}{
		{"default listen", "log: {level: info}\n", 1338, ""},
		{"one port", "listen: [\"127.0.0.1:8080\", \"[::1]:8080\"]\n", 8080, ""},
		{"two ports", "listen: [\"127.0.0.1:8080\", \"127.0.0.1:9090\"]\n", 0, "ports 8080 and 9090: say which with --port"},
		{"port 0", "listen: [\"127.0.0.1:0\"]\n", 0, "port 1-65535 needed"},
		{"bad file", "lisen: x\n", 0, "unknown key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "imds.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := portFromConfig(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("portFromConfig=%d, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("portFromConfig=%d, %v; want %d", got, err, tt.want)
			}
		})
	}
	// A bad --config stops net up before anything is changed.
	if _, err := runNet(t, "up", "--config", filepath.Join(t.TempDir(), "none.yaml"), "--state-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("net up --config missing: %v, want an error naming the file", err)
	}
}
