//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// vmDHCPScript is a udhcpc event script: it applies the lease and the
// classless routes (option 121) and records what it received.
const vmDHCPScript = `#!/bin/sh
OUT=%q
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	set -- $staticroutes
	while [ $# -ge 2 ]; do
		if [ "$2" = "0.0.0.0" ]; then ip route replace "$1" dev "$interface"; else ip route replace "$1" via "$2" dev "$interface"; fi
		shift 2
	done
	env > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
	;;
esac
exit 0
`

// TestVMsBootWithDHCPAndCloudInit is issue 6's scene with real components: a
// bridge in a "host" namespace, two "VM" namespaces with their own MACs,
// imds serving there with a managed dnsmasq; each VM registered by MAC gets
// its allocated address and the route to 169.254.169.254 over DHCP
// (busybox udhcpc), resolves the other's name, and cloud-init reads its own
// instance-id, keys and rendered user-data from http://169.254.169.254/.
func TestVMsBootWithDHCPAndCloudInit(t *testing.T) {
	for _, tool := range []string{"dnsmasq", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", tool)
		}
	}
	requirePythonModule(t, "cloudinit", "cloud-init")
	hostNS := newNetTestNS(t, "vmhost")
	vms := []struct{ name, ns, mac string }{
		{"vm-1", newNetTestNS(t, "vm1"), "02:00:00:00:18:01"},
		{"vm-2", newNetTestNS(t, "vm2"), "02:00:00:00:18:02"},
	}
	ip := func(args ...string) { t.Helper(); mustIP(t, args...) }
	ip("-n", hostNS, "link", "add", "br0", "type", "bridge")
	ip("-n", hostNS, "addr", "add", "10.218.0.1/24", "dev", "br0")
	ip("-n", hostNS, "link", "set", "br0", "up")
	for i, vm := range vms {
		port := fmt.Sprintf("vp%d", i)
		ip("-n", hostNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", vm.ns)
		ip("-n", hostNS, "link", "set", port, "master", "br0", "up")
		ip("-n", vm.ns, "link", "set", "eth0", "address", vm.mac, "up")
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "imds.yaml")
	os.WriteFile(cfg, []byte(`listen: ["10.218.0.1:1338"]
vm_network:
  bridge: br0
  subnet: 10.218.0.0/24
  gateway: 10.218.0.1
  domain: vm.internal
user_data_templates:
  ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVmTestKey ops@example"]
`), 0o600)
	sock := shortSocketPath(t)
	var serverLog syncBuffer
	client := serveInNetns(t, hostNS, sock, &serverLog, "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	if out, err := runNet(t, "up", "--netns", hostNS, "--bridge", "br0", "--port", "1338", "--state-dir", filepath.Join(dir, "state")); err != nil {
		t.Fatalf("imds net up: %v\n%s", err, out)
	}

	for _, vm := range vms {
		var out, errOut strings.Builder
		if code := run(context.Background(), []string{"instance", "add", vm.name, "--mac", vm.mac, "--role", "vm-role", "--admin-socket", sock}, &out, &errOut); code != 0 {
			t.Fatalf("imds instance add %s: %s", vm.name, errOut.String())
		}
	}
	addrOf := map[string]string{}
	for _, vm := range vms {
		inst, err := client.GetInstance(context.Background(), vm.name)
		if err != nil || len(inst.SourceAddrs) != 1 {
			t.Fatalf("%s: %v %v", vm.name, inst, err)
		}
		addrOf[vm.name] = inst.SourceAddrs[0]
	}

	for _, vm := range vms {
		result := filepath.Join(dir, vm.name+".env")
		script := filepath.Join(dir, vm.name+".sh")
		os.WriteFile(script, fmt.Appendf(nil, vmDHCPScript, result), 0o700)
		var got string
		for attempt := 0; attempt < 20 && got == ""; attempt++ { // dnsmasq picks up new hosts on SIGHUP
			exec.Command("ip", "netns", "exec", vm.ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "3", "-T", "1",
				"-O", "staticroutes", "-s", script).Run()
			b, _ := os.ReadFile(result)
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "ip="); ok {
					got = v
				}
			}
		}
		if got != addrOf[vm.name] {
			t.Fatalf("%s got %q over DHCP, want the address imds allocated, %s\nserver log:\n%s", vm.name, got, addrOf[vm.name], serverLog.String())
		}
		route, _ := exec.Command("ip", "-n", vm.ns, "route", "get", "169.254.169.254").CombinedOutput()
		if !strings.Contains(string(route), "via 10.218.0.1") {
			t.Errorf("%s: route to 169.254.169.254: %s", vm.name, route)
		}
	}

	// DNS: each VM's name through the managed dnsmasq.
	out, _ := exec.Command("ip", "netns", "exec", vms[0].ns, "busybox", "nslookup", "vm-2.vm.internal", "10.218.0.1").CombinedOutput()
	if !strings.Contains(string(out), addrOf["vm-2"]) {
		t.Errorf("vm-1 resolving vm-2.vm.internal:\n%s", out)
	}

	// cloud-init in each VM, at the real metadata address.
	script, _ := filepath.Abs(filepath.Join("testdata", "clients", "cloudinit_client.py"))
	for _, vm := range vms {
		stdout, err := exec.Command("ip", "netns", "exec", vm.ns, systemPython, script, "--platform", "unknown", "--max-wait", "10", "http://169.254.169.254").Output()
		if err != nil {
			t.Fatalf("cloud-init in %s: %v\n%s", vm.name, err, stdout)
		}
		var res map[string]any
		if err := json.Unmarshal(stdout, &res); err != nil {
			t.Fatalf("cloud-init in %s printed %s", vm.name, stdout)
		}
		inst, _ := client.GetInstance(context.Background(), vm.name)
		text := string(stdout)
		if !strings.Contains(text, inst.ID) || !strings.Contains(text, "VmTestKey") || !strings.Contains(text, "#cloud-config") {
			t.Errorf("cloud-init in %s read %s; want instance %s, the server key and the rendered user-data", vm.name, text, inst.ID)
		}
	}

	// md_server's upload endpoint does not take uploads from a VM.
	if code, err := exec.Command("ip", "netns", "exec", vms[0].ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
		"--data-binary", "<domain/>", "http://10.218.0.1:1338/instance-upload").Output(); err == nil && string(code) != "403" {
		t.Errorf("instance-upload from a VM: status %s, want 403", code)
	}

	// Removal frees the address; the same MAC gets it back.
	var errOut strings.Builder
	if code := run(context.Background(), []string{"instance", "rm", "vm-2", "--admin-socket", sock}, &strings.Builder{}, &errOut); code != 0 {
		t.Fatalf("rm: %s", errOut.String())
	}
	if code := run(context.Background(), []string{"instance", "add", "vm-2", "--mac", vms[1].mac, "--admin-socket", sock}, &strings.Builder{}, &errOut); code != 0 {
		t.Fatalf("re-add: %s", errOut.String())
	}
	if inst, err := client.GetInstance(context.Background(), "vm-2"); err != nil || inst.SourceAddrs[0] != addrOf["vm-2"] {
		t.Errorf("re-added vm-2 got %v (%v), want its old address %s", inst.SourceAddrs, err, addrOf["vm-2"])
	}
}
