package netsetup

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestUpPortOutOfRange(t *testing.T) {
	for _, p := range []int{-1, 65536, 70000} {
		_, err := Up(context.Background(), Plan{Port: p}, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("port %d: %v", p, err)
		}
	}
	if _, err := Status(context.Background(), StatusOptions{Port: 70000}); err == nil {
		t.Errorf("status with port 70000: no error")
	}
}

func TestUnsupportedElsewhere(t *testing.T) {
	if runtime.GOOS == "linux" {
		t.Skip("Linux is supported")
	}
	if _, err := Down(context.Background(), nil, t.TempDir()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Down: %v, want errors.ErrUnsupported", err)
	}
}

func TestChangeString(t *testing.T) {
	if s := (Change{What: "added 169.254.169.254/32 to lo"}).String(); s != "added 169.254.169.254/32 to lo" {
		t.Error(s)
	}
	if s := (Change{Netns: "ns1", What: "x"}).String(); s != "netns ns1: x" {
		t.Error(s)
	}
}
