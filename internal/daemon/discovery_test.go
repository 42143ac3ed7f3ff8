package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerDiscoveryNoDefault starts a daemon following an engine with no
// containers: it syncs before serving, and the default instance answers
// nobody, so an unlabelled container could never get its credentials.
func TestDockerDiscoveryNoDefault(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Api-Version", "1.41") })
	mux.HandleFunc("GET /v1.41/containers/json", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) })
	mux.HandleFunc("GET /v1.41/events", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	engine := httptest.NewServer(mux)
	defer engine.Close()

	cfg := testConfig(t)
	cfg.ConfigPath = filepath.Join(t.TempDir(), "imds.yaml")
	conf := fmt.Sprintf("discovery:\n  docker:\n    host: tcp://%s\n", strings.TrimPrefix(engine.URL, "http://"))
	if err := os.WriteFile(cfg.ConfigPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	d.Flush()
	log := cfg.Stderr.(*lockedBuffer).String()
	if !strings.Contains(log, "Docker engine synchronised") || strings.Contains(log, "has not answered") {
		t.Errorf("no first sync before serving; log:\n%s", log)
	}
	if code, body := get(t, d.URL()+"/latest/meta-data/instance-id"); code != http.StatusNotFound {
		t.Errorf("unknown requester with Docker discovery on: %d %q, want 404", code, body)
	}
	list, _ := d.Registry.ListInstances(context.Background())
	if len(list) != 0 {
		t.Errorf("instances %v, want none: the zero-configuration instance is not served with discovery on", list)
	}
}
