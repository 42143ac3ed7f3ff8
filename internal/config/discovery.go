package config

import (
	"fmt"
	"net"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Discovery is the discovery: section: sources that find instances on
// their own and own them while they run.
type Discovery struct {
	// Docker, if set, makes the Docker engine's running containers instances.
	Docker *DockerDiscovery
}

// DockerDiscovery is discovery.docker: which containers of which engine
// become instances.
type DockerDiscovery struct {
	// Host is the engine's address, unix:///path or tcp://host:port; empty
	// means DOCKER_HOST, else the engine's default Unix socket.
	Host string
	// Networks are the Docker networks whose addresses identify containers;
	// empty means every network a container is on.
	Networks []string
	// All makes every running container on Networks an instance, not only
	// those labelled imds.enable=true.
	All bool
}

// discovery decodes the discovery: section. Writing discovery.docker turns
// it on; enabled: false turns it off and keeps the rest for later.
func (d *decoder) discovery(path string, line int, v *yaml.Node, f *File) {
	d.mapping(path, line, v, schema{
		"docker": func(p string, l int, v *yaml.Node) {
			dd := &DockerDiscovery{}
			enabled := true
			if !d.mapping(p, l, v, schema{
				"enabled": func(p string, l int, v *yaml.Node) {
					if b, ok := d.boolean(p, l, v); ok {
						enabled = b
					}
				},
				"host": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && d.dockerHost(p, l, s) {
						dd.Host = s
					}
				},
				"networks": func(p string, l int, v *yaml.Node) {
					nets, ok := d.strs(p, l, v)
					seen := map[string]bool{}
					for i, n := range nets {
						switch {
						case n == "" || strings.ContainsAny(n, " \t\n/"):
							d.errorf(l, fmt.Sprintf("%s[%d]", p, i), "must be a Docker network name, got %q", n)
							ok = false
						case seen[n]:
							d.errorf(l, fmt.Sprintf("%s[%d]", p, i), "network %q is listed twice", n)
							ok = false
						}
						seen[n] = true
					}
					if ok {
						dd.Networks = nets
					}
				},
				"all": func(p string, l int, v *yaml.Node) {
					if b, ok := d.boolean(p, l, v); ok {
						dd.All = b
					}
				},
			}) {
				return // docker: null is no section
			}
			if dd.All && len(dd.Networks) == 0 {
				d.errorf(l, p+".all", "all: true needs networks: (every container on the host would be an instance)")
				return
			}
			if enabled {
				f.Discovery.Docker = dd
			}
		},
	})
}

// dockerHost checks an engine address: a Unix socket or a TCP endpoint.
func (d *decoder) dockerHost(path string, line int, s string) bool {
	if rest, ok := strings.CutPrefix(s, "unix://"); ok {
		if !strings.HasPrefix(rest, "/") {
			d.errorf(line, path, "must be unix:///absolute/path or tcp://host:port, got %q", s)
			return false
		}
		return true
	}
	if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
		if _, port, err := net.SplitHostPort(rest); err == nil && port != "" {
			return true
		}
	}
	d.errorf(line, path, "must be unix:///absolute/path or tcp://host:port, got %q", s)
	return false
}
