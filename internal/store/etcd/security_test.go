package etcd

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// TestTLS: against an etcd that requires client certificates, the store
// works with the CA and a client certificate, and refuses to start with a
// wrong CA or without a certificate, naming the endpoint.
func TestTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.StartTLS(t, certs)
	good := Config{Endpoints: []string{srv.ClientURL}, CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey, Timeout: 10 * time.Second}
	s, err := Open(t.Context(), good)
	if err != nil {
		t.Fatalf("Open over TLS: %v", err)
	}
	defer s.Close()
	if err := s.Instances().CreateInstance(t.Context(), storetest.FullInstance("tls")); err != nil {
		t.Fatalf("CreateInstance over TLS: %v", err)
	}
	if _, err := s.Instances().FindInstanceByName(t.Context(), "tls"); err != nil {
		t.Fatalf("FindInstanceByName over TLS: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"another CA", func(c *Config) { c.CAFile = certs.OtherCA }, "certificate signed by unknown authority"},
		{"no client certificate", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			cfg.Timeout = time.Second
			tc.change(&cfg)
			s, err := Open(t.Context(), cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if msg := ec2.ErrorMessage(err); !strings.Contains(msg, srv.ClientURL) || !strings.Contains(msg, tc.want) {
				t.Errorf("Open: %v; want an error naming %s and saying %q", err, srv.ClientURL, tc.want)
			}
			t.Logf("Open with %s: %v", tc.name, err)
		})
	}
	t.Run("unreadable CA", func(t *testing.T) {
		cfg := good
		cfg.CAFile = certs.CA + ".missing"
		if _, err := Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "store.etcd.tls.ca") {
			t.Errorf("Open with a missing CA file: %v; want an error naming store.etcd.tls.ca", err)
		}
	})
}

// TestPassword: with etcd's authentication on, the right user and password
// work, and a wrong password is refused at Open with a message that names
// the endpoint and not the password.
func TestPassword(t *testing.T) {
	srv := etcdtest.Start(t)
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.ClientURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := t.Context()
	if _, err := admin.UserAdd(ctx, "root", "root-secret-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, Config{Endpoints: []string{srv.ClientURL}, Username: "root", Password: "root-secret-1", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Open with the right password: %v", err)
	}
	defer s.Close()
	if err := s.Instances().CreateInstance(ctx, storetest.FullInstance("auth")); err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	for _, cfg := range []Config{
		{Endpoints: []string{srv.ClientURL}, Username: "root", Password: "wrong-secret-2", Timeout: 2 * time.Second},
		{Endpoints: []string{srv.ClientURL}, Timeout: 2 * time.Second},
	} {
		s, err := Open(ctx, cfg)
		if err == nil {
			s.Close()
			t.Errorf("Open as %q succeeded", cfg.Username)
			continue
		}
		if ec2.ErrorCode(err) != ec2.EFORBIDDEN {
			t.Errorf("Open as %q: code %s, want %s", cfg.Username, ec2.ErrorCode(err), ec2.EFORBIDDEN)
		}
		if msg := ec2.ErrorMessage(err); !strings.Contains(msg, srv.ClientURL) || strings.Contains(msg, "secret") {
			t.Errorf("Open as %q: %v; want an error naming %s and no password", cfg.Username, err, srv.ClientURL)
		}
		t.Logf("Open as %q: %v", cfg.Username, err)
	}
}
