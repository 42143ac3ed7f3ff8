package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStore(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      Store
	}{
		{"absent", "", Store{}},
		{"the word bolt", "store: bolt\n", Store{}},
		{"bolt mapping", "store:\n  bolt: {}\n", Store{}},
		{"etcd with defaults", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n",
			Store{Etcd: &EtcdStore{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/imds/", DialTimeout: 5 * time.Second}}},
		{"etcd with everything", `store:
  etcd:
    endpoints:
      - https://10.0.0.1:2379
      - https://10.0.0.2:2379
    prefix: /cluster-a
    tls: {ca: ca.pem, cert: /etc/imds/client.pem, key: client-key.pem}
    username: imds
    password_file: etcd-password
    dial_timeout: 2s
    host: hv-1
`, Store{Etcd: &EtcdStore{Host: "hv-1", Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, Prefix: "/cluster-a/",
			CA: "/conf/ca.pem", Cert: "/etc/imds/client.pem", Key: "/conf/client-key.pem",
			Username: "imds", PasswordFile: "/conf/etcd-password", DialTimeout: 2 * time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tc.src), "/conf")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, f.Store); diff != "" {
				t.Errorf("Store (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStoreErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown word", "store: sqlite\n", `t.yaml:1: store: must be bolt, got "sqlite"`},
		{"unknown backend", "store:\n  consul: {}\n", "t.yaml:2: store.consul: unknown key"},
		{"both", "store:\n  bolt: {}\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n", "t.yaml:1: store: names both bolt and etcd: choose one store"},
		{"no endpoints", "store:\n  etcd:\n    prefix: /x/\n", "t.yaml:2: store.etcd.endpoints: is required"},
		{"empty endpoints", "store:\n  etcd:\n    endpoints: []\n", "t.yaml:3: store.etcd.endpoints: must list at least one etcd client URL"},
		{"endpoint without scheme", "store:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n", `t.yaml:3: store.etcd.endpoints[0]: must be an etcd client URL like http://127.0.0.1:2379, got "127.0.0.1:2379"`},
		{"endpoint without port", "store:\n  etcd:\n    endpoints: [http://etcd-1]\n", `t.yaml:3: store.etcd.endpoints[0]: must name a port`},
		{"endpoint with a path", "store:\n  etcd:\n    endpoints: [http://etcd-1:2379/v3]\n", `store.etcd.endpoints[0]: must be an etcd client URL`},
		{"misspelt key", "store:\n  etcd:\n    endpoint: [http://127.0.0.1:2379]\n", "t.yaml:3: store.etcd.endpoint: unknown key; did you mean endpoints?"},
		{"relative prefix", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    prefix: imds\n", `t.yaml:4: store.etcd.prefix: must be a key prefix starting with /`},
		{"cert without key", "store:\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    tls: {cert: c.pem}\n", "t.yaml:2: store.etcd.tls: cert and key go together"},
		{"tls over http", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    tls: {ca: ca.pem}\n", "t.yaml:2: store.etcd.endpoints: must all be https:// URLs when tls is set"},
		{"unknown tls key", "store:\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    tls: {cacert: ca.pem}\n", "t.yaml:4: store.etcd.tls.cacert: unknown key"},
		{"username without password", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    username: imds\n", "t.yaml:2: store.etcd.password_file: is required with username"},
		{"password without username", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    password_file: p\n", "t.yaml:2: store.etcd.username: is required with password_file"},
		{"password inline", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    password: hunter2\n", "t.yaml:4: store.etcd.password: unknown key"},
		{"host with a slash", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    host: a/b\n", `t.yaml:4: store.etcd.host: must be a host name without / or spaces, got "a/b"`},
		{"short dial timeout", "store:\n  etcd:\n    endpoints: [http://127.0.0.1:2379]\n    dial_timeout: 1ms\n", "t.yaml:4: store.etcd.dial_timeout:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src), "/conf")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q):\n%v\nwant %q", tc.src, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the password: %v", err)
			}
		})
	}
}
