//go:build linux

package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNetUpHold: `net up --hold` keeps the setup while it runs and removes it
// when signalled, as the compose example's imds-net container does.
func TestNetUpHold(t *testing.T) {
	ns := newNetTestNS(t, "hold")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"net", "up", "--netns", ns, "--port", "1338", "--state-dir", t.TempDir(), "--hold"}, &out, &out)
	}()
	table := func() bool {
		return exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "imds").Run() == nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "holding") {
		if time.Now().After(deadline) {
			t.Fatalf("net up --hold did not set up: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !table() {
		t.Fatalf("table inet imds absent while holding: %s", out.String())
	}
	cancel() // what SIGTERM does in main
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("net up --hold did not return after the signal")
	}
	if table() {
		t.Errorf("table inet imds left after --hold ended: %s", out.String())
	}
}
