package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runNet runs imds net with args and returns its output.
func runNet(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := newNetCommand()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SilenceUsage = true
	c.SilenceErrors = true
	c.SetArgs(args)
	err := c.ExecuteContext(context.Background())
	t.Logf("imds net %s: %v\n%s", strings.Join(args, " "), err, out.String())
	return out.String(), err
}

func TestNetCommandFlags(t *testing.T) {
	c := newNetCommand()
	want := map[string][]string{
		"up":     {"port", "bridge", "netns", "ipv6", "state-dir"},
		"down":   {"netns", "state-dir"},
		"status": {"port", "netns", "state-dir"},
	}
	for name, flags := range want {
		sub, _, err := c.Find([]string{name})
		if err != nil || sub.Name() != name {
			t.Fatalf("imds net %s: %v", name, err)
		}
		for _, f := range flags {
			if sub.Flags().Lookup(f) == nil && sub.InheritedFlags().Lookup(f) == nil {
				t.Errorf("imds net %s has no --%s", name, f)
			}
		}
	}
	if f := c.PersistentFlags().Lookup("state-dir"); f == nil || f.DefValue != "/run/imds-net" {
		t.Errorf("--state-dir default: %v", f)
	}
}

func TestNetCommandBadPort(t *testing.T) {
	for _, args := range [][]string{
		{"up", "--port", "0", "--state-dir", t.TempDir()},
		{"up", "--port", "70000", "--state-dir", t.TempDir()},
		{"status", "--port", "-1", "--state-dir", t.TempDir()},
	} {
		if _, err := runNet(t, args...); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("imds net %v: %v, want out of range", args, err)
		}
	}
}
