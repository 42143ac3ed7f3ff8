//go:build unix

package admin_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
)

// TestServer_SocketGroup: with a group, the socket and the directory made
// for it let that group in (0660, 0750), for CLI users without root.
func TestServer_SocketGroup(t *testing.T) {
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid()
	for _, g := range groups {
		if g != gid {
			gid = g // a supplementary group proves the chown, not the default
			break
		}
	}
	if os.Geteuid() == 0 {
		gid = 65534 // root may give the socket any group
	}
	path := filepath.Join(admintest.SocketDir(t), "sub", "admin.sock")
	s := admin.NewServer()
	s.Service, s.SocketPath, s.SocketGroup = admintest.NewService(), path, strconv.Itoa(gid)
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(context.Background())
	for _, tt := range []struct {
		path string
		want os.FileMode
	}{{path, 0o660}, {filepath.Dir(path), 0o750}} {
		fi, err := os.Lstat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != tt.want || int(st.Gid) != gid {
			t.Errorf("%s: mode %04o group %d, want %04o group %d", tt.path, fi.Mode().Perm(), st.Gid, tt.want, gid)
		}
	}
	if err := admin.NewClient(path).Health(context.Background()); err != nil {
		t.Errorf("Health: %v", err)
	}

	bad := admin.NewServer()
	bad.Service, bad.SocketPath, bad.SocketGroup = admintest.NewService(), filepath.Join(filepath.Dir(path), "b.sock"), "no-such-group-imds"
	if err := bad.Open(); err == nil || !strings.Contains(err.Error(), "admin socket group") {
		t.Errorf("Open with an unknown group: err=%v, want one naming the admin socket group", err)
		bad.Close(context.Background())
	}
}
