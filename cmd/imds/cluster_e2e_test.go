package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/etcdtest"
)

// TestClusterCLI: two servers on one etcd. An instance added with the CLI
// through host A is shown by host B, imds host list on either shows both
// with live leases, and a server that stops drops out of the list.
func TestClusterCLI(t *testing.T) {
	srv := etcdtest.Start(t)
	conf := func(host string) string {
		return fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /cli/\n    host: %s\n", srv.ClientURL, host)
	}
	a, err := openServer(t, conf("hv-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := openServer(t, conf("hv-b"))
	if err != nil {
		t.Fatal(err)
	}
	sockA, sockB := "--admin-socket="+a.d.Admin.SocketPath, "--admin-socket="+b.d.Admin.SocketPath

	mustRunCLI(t, "instance", "add", "web-1", "--ip", "10.30.0.5", sockA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, code := runCLI(t, "instance", "get", "web-1", "-o", "json", sockB)
		if code == 0 && strings.Contains(out, "10.30.0.5") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host B does not show web-1 after 10 s: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}

	out := mustRunCLI(t, "host", "list", sockB)
	if !strings.Contains(out, "hv-a ") || !strings.Contains(out, "hv-b (this host)") || !strings.Contains(out, "LEASE") {
		t.Errorf("imds host list on B:\n%s", out)
	}
	var doc struct {
		Hosts []struct {
			Name       string   `json:"name"`
			Listen     []string `json:"listen"`
			TTLSeconds int      `json:"ttl_seconds"`
			Self       bool     `json:"self"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(mustRunCLI(t, "host", "list", "-o", "json", sockA)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Hosts) != 2 || doc.Hosts[0].Name != "hv-a" || !doc.Hosts[0].Self || doc.Hosts[1].Self ||
		doc.Hosts[0].TTLSeconds <= 0 || len(doc.Hosts[0].Listen) != 1 {
		t.Errorf("imds host list -o json on A: %+v", doc)
	}

	if err := b.d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out := mustRunCLI(t, "host", "list", sockA); strings.Contains(out, "hv-b") {
		t.Errorf("a closed host is still listed:\n%s", out)
	}
}

// TestHostListWithoutEtcd: without store.etcd, imds host list says so.
func TestHostListWithoutEtcd(t *testing.T) {
	s, err := openServer(t, "")
	if err != nil {
		t.Fatal(err)
	}
	mustFailCLI(t, "store.etcd is not set", "host", "list", "--admin-socket="+s.d.Admin.SocketPath)
}
