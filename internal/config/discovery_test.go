package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDockerDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      *DockerDiscovery
		wantErr   string
	}{
		{name: "absent", src: "log: {level: info}\n"},
		{name: "null", src: "discovery:\n  docker:\n"},
		{name: "section turns it on", src: "discovery:\n  docker: {}\n", want: &DockerDiscovery{}},
		{name: "everything", src: "discovery:\n  docker:\n    enabled: true\n    host: unix:///run/docker.sock\n    networks: [apps, db]\n    all: true\n",
			want: &DockerDiscovery{Host: "unix:///run/docker.sock", Networks: []string{"apps", "db"}, All: true}},
		{name: "tcp host", src: "discovery: {docker: {host: \"tcp://127.0.0.1:2375\"}}\n", want: &DockerDiscovery{Host: "tcp://127.0.0.1:2375"}},
		{name: "disabled", src: "discovery:\n  docker:\n    enabled: false\n    networks: [apps]\n"},
		{name: "unknown key", src: "discovery:\n  docker:\n    netwroks: [apps]\n",
			wantErr: "t.yaml:3: discovery.docker.netwroks: unknown key; did you mean networks?"},
		{name: "unknown source", src: "discovery:\n  podman: {}\n",
			wantErr: "t.yaml:2: discovery.podman: unknown key"},
		{name: "bad host", src: "discovery:\n  docker:\n    host: /var/run/docker.sock\n",
			wantErr: `t.yaml:3: discovery.docker.host: must be unix:///absolute/path or tcp://host:port, got "/var/run/docker.sock"`},
		{name: "all without networks", src: "discovery:\n  docker:\n    all: true\n",
			wantErr: "t.yaml:2: discovery.docker.all: all: true needs networks: (every container on the host would be an instance)"},
		{name: "network twice", src: "discovery:\n  docker:\n    networks: [a, a]\n",
			wantErr: `t.yaml:3: discovery.docker.networks[1]: network "a" is listed twice`},
		{name: "enabled yes", src: "discovery:\n  docker:\n    enabled: yes\n",
			wantErr: `t.yaml:3: discovery.docker.enabled: must be true or false, got the string "yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tc.src), "testdata")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Parse error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(f.Discovery.Docker, tc.want); diff != "" {
				t.Errorf("Discovery.Docker (-got +want):\n%s", diff)
			}
		})
	}
}
