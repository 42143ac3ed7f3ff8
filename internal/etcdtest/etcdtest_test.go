package etcdtest

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestStopKillsTheProcess: Stop leaves no process behind, and Start brings
// the member back on the same address with its data.
func TestStopKillsTheProcess(t *testing.T) {
	s := Start(t)
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	s.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("etcd (pid %d) still runs after Stop", pid)
	}
	if healthy(strings.TrimPrefix(s.ClientURL, "http://"), nil) {
		t.Fatal("the client URL still answers after Stop")
	}
	s.Start()
	if _, err := os.Stat(s.DataDir + "/member"); err != nil {
		t.Errorf("the data directory has no member after a restart: %v", err)
	}
	s.Stop()
	s.Stop() // harmless
}

func TestCluster(t *testing.T) {
	members := StartCluster(t, 3)
	if eps := Endpoints(members...); len(eps) != 3 || eps[0] == eps[1] {
		t.Errorf("Endpoints = %v", eps)
	}
}
