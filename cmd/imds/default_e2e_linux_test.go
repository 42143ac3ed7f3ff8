//go:build linux

package main

import (
	"strings"
	"testing"
)

// TestNetnsDefaultInstanceYieldsToRegistered is issue 10's scene: with zero
// configuration the default instance answers everyone, but once instances
// are registered at run time a namespace that is none of them gets 404 and
// no credentials (curl and the Go SDK), the log says why, and a removed
// instance's address gets 404 too.
func TestNetnsDefaultInstanceYieldsToRegistered(t *testing.T) {
	lab := newNetnsLab(t, 4)
	srv := startMultiInstanceServer(t, lab, "")
	stranger := lab.Hosts[3]
	idURL := srv.BridgeURL + "/latest/meta-data/instance-id"

	// Alone, the default instance answers every requester. (It has no
	// tags or user-data: the SDK's errors for those are expected.)
	res := goHelper(t, stranger, netnsHelperJob{URL: srv.BridgeURL, SDK: true})
	if !strings.HasPrefix(res.InstanceID, "i-") || !strings.HasPrefix(res.AccessKeyID, "ASIA") || res.RoleName != "imds-instance-role" {
		t.Fatalf("zero configuration: the Go SDK in %s got %+v, want the default instance's credentials", stranger.NS, res)
	}
	defaultID := res.InstanceID

	for i, h := range lab.Hosts[:3] {
		name := "vm" + string(rune('1'+i))
		if _, stderr, code := runArgs("instance", "add", name, "--ip", h.Addr.String(), "--role", name+"-role", "--admin-socket", srv.AdminSock); code != 0 {
			t.Fatalf("imds instance add %s: exit %d: %s", name, code, stderr)
		}
	}
	if !strings.Contains(srv.logs.String(), "requesters that match no instance now get 404") {
		t.Errorf("the first registration did not log that unknown requesters now get 404:\n%s", srv.logs.String())
	}

	// The stranger now gets nothing: 404 on every path, no credentials.
	if status, ok := curlStatus(t, stranger, "GET", idURL, nil); ok && status != 404 {
		t.Errorf("curl from the unregistered %s: status %d, want 404", stranger.NS, status)
	}
	res = goHelper(t, stranger, netnsHelperJob{URL: srv.BridgeURL, SDK: true})
	if res.AccessKeyID != "" || res.InstanceID != "" || res.RoleName != "" {
		t.Errorf("the Go SDK in the unregistered %s still got %+v", stranger.NS, res)
	}
	if log := srv.logs.String(); !strings.Contains(log, "unknown requester") || !strings.Contains(log, stranger.Addr.String()) {
		t.Errorf("no log line names the unknown requester %s:\n%s", stranger.Addr, log)
	}

	// Each registered namespace gets its own instance, not the default.
	for i, h := range lab.Hosts[:3] {
		name := "vm" + string(rune('1'+i))
		res := goHelper(t, h, netnsHelperJob{URL: srv.BridgeURL, SDK: true})
		if res.RoleName != name+"-role" || !strings.HasPrefix(res.AccessKeyID, "ASIA") || res.InstanceID == defaultID || !strings.HasPrefix(res.InstanceID, "i-") {
			t.Errorf("the Go SDK in %s got %+v, want %s with %s-role", h.NS, res, name, name)
		}
	}

	// A removed instance's address does not fall back to the default.
	if _, stderr, code := runArgs("instance", "rm", "vm2", "--admin-socket", srv.AdminSock); code != 0 {
		t.Fatalf("imds instance rm vm2: exit %d: %s", code, stderr)
	}
	if status, ok := curlStatus(t, lab.Hosts[1], "GET", idURL, nil); ok && status != 404 {
		t.Errorf("curl from removed vm2's %s: status %d, want 404", lab.Hosts[1].NS, status)
	}
	if status, ok := curlStatus(t, lab.Hosts[0], "GET", idURL, nil); ok && status != 200 {
		t.Errorf("curl from vm1's %s after removing vm2: status %d, want 200", lab.Hosts[0].NS, status)
	}
}
