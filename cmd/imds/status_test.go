package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/etcdtest"
)

// TestStatusBolt: imds status on a bolt server reports its parts and no
// problem, and exits 0.
func TestStatusBolt(t *testing.T) {
	s := startServer(t, "")
	out, stderr, code := runCLI(t, "status", "--admin-socket="+s.d.Admin.SocketPath)
	if code != 0 {
		t.Fatalf("imds status exited %d: %s\n%s", code, stderr, out)
	}
	for _, want := range []string{"server ", "metadata on 127.0.0.1:", "store       bolt ", "imds.db", "no problems"} {
		if !strings.Contains(out, want) {
			t.Errorf("imds status lacks %q:\n%s", want, out)
		}
	}
	out, stderr, code = runCLI(t, "status", "-o", "json", "--admin-socket="+s.d.Admin.SocketPath)
	var doc struct {
		Problems []string `json:"problems"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Problems == nil || len(doc.Problems) != 0 {
		t.Errorf("imds status -o json exited %d (%s), want \"problems\": []:\n%s", code, stderr, out)
	}
}

// TestStatusEtcd: on etcd, imds status names the endpoints, the host and
// its lease; with etcd stopped it says etcd does not answer and exits 1,
// and -o json carries the same problems.
func TestStatusEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := openServer(t, fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /status/\n    host: hv-s\n    dial_timeout: 2s\n", srv.ClientURL))
	if err != nil {
		t.Fatal(err)
	}
	sock := "--admin-socket=" + s.d.Admin.SocketPath
	out, stderr, code := runCLI(t, "status", sock)
	if code != 0 {
		t.Fatalf("imds status exited %d: %s\n%s", code, stderr, out)
	}
	for _, want := range []string{"etcd at " + srv.ClientURL + ", prefix /status/: answers", "host hv-s, lease ", "hosts       1 live: hv-s", "no problems"} {
		if !strings.Contains(out, want) {
			t.Errorf("imds status lacks %q:\n%s", want, out)
		}
	}

	srv.Stop()
	defer srv.Start() // so that the server closes without waiting on it
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, stderr, code = runCLI(t, "status", sock)
		if code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds status still exits 0 10 s after etcd stopped:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := "store: etcd at " + srv.ClientURL + " does not answer"
	if code != 1 || !strings.Contains(out, "DOES NOT ANSWER") || !strings.Contains(out, want) || !strings.Contains(stderr, "the server reports problems") {
		t.Errorf("imds status with etcd stopped: exit %d\n%s\n%s", code, out, stderr)
	}
	out, _, code = runCLI(t, "status", "-o", "json", sock)
	var doc struct {
		Store struct {
			Online      bool      `json:"online"`
			Host        string    `json:"host"`
			LastContact time.Time `json:"last_contact"`
		} `json:"store"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("imds status -o json: %v\n%s", err, out)
	}
	if code != 1 || doc.Store.Online || doc.Store.Host != "hv-s" || doc.Store.LastContact.IsZero() || len(doc.Problems) == 0 || !strings.HasPrefix(doc.Problems[0], want) {
		t.Errorf("imds status -o json with etcd stopped: exit %d %+v", code, doc)
	}
}
