//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetnsLibvirtVMByMAC is issue 13's first trap: a VM registered from its
// domain XML has only a MAC (no address, no vm_network), and its requests
// must be recognised by that MAC through the host's neighbour table without
// any setting: curl and the Go SDK in the VM's namespace read its own
// instance, whose ID comes from the domain's UUID.
func TestNetnsLibvirtVMByMAC(t *testing.T) {
	lab := newNetnsLab(t, 2)
	vm, other := lab.Hosts[0], lab.Hosts[1]
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", os.Getpid()>>16&0xff, os.Getpid()>>8&0xff, os.Getpid()&0xff)
	if _, err := ipCmd("-n", vm.NS, "link", "set", "eth0", "address", mac); err != nil {
		t.Fatal(err)
	}
	xml, err := os.ReadFile(filepath.Join("..", "..", "internal", "libvirt", "testdata", "test-domain.xml"))
	if err != nil {
		t.Fatal(err)
	}
	domain := filepath.Join(t.TempDir(), "vm.xml")
	if err := os.WriteFile(domain, []byte(strings.ReplaceAll(string(xml), "aa:bb:cc:dd:ee:ff", mac)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startMultiInstanceServer(t, lab, "")
	if _, stderr, code := runArgs("instance", "add", "--from-libvirt", domain, "--admin-socket", srv.AdminSock); code != 0 {
		t.Fatalf("imds instance add --from-libvirt: exit %d: %s", code, stderr)
	}

	const wantID = "i-04fbe0879f5844d57" // from the domain's UUID
	res := goHelper(t, vm, netnsHelperJob{URL: srv.BridgeURL, SDK: true})
	if res.InstanceID != wantID || !strings.HasPrefix(res.AccessKeyID, "ASIA") {
		t.Errorf("the Go SDK in the VM (MAC %s) got %+v, want instance %s with credentials", mac, res, wantID)
	}
	if status, ok := curlStatus(t, vm, "GET", srv.BridgeURL+"/latest/meta-data/instance-id", nil); ok && status != 200 {
		t.Errorf("curl in the VM: status %d, want 200", status)
	}
	// Another namespace, with another MAC, is not the VM.
	if status, ok := curlStatus(t, other, "GET", srv.BridgeURL+"/latest/meta-data/instance-id", nil); ok && status != 404 {
		t.Errorf("curl from %s (not the VM): status %d, want 404", other.NS, status)
	}
}
