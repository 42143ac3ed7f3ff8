package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Templates configures user-data templates (see internal/userdata).
type Templates struct {
	// Dir holds per-instance templates named <name>, <name>.yaml, <mac> or <mac>.yaml.
	Dir string
	// Default is the template for instances without user-data or a file in
	// Dir: a path, "" for the built-in #cloud-config, or "-" for none.
	Default string
	// SSHKeys are added to every instance's keys.
	SSHKeys []string
	// Data is free-form template data (.Data).
	Data map[string]any
}

func (d *decoder) templates(path string, line int, v *yaml.Node) *Templates {
	t := &Templates{}
	ok := d.mapping(path, line, v, schema{
		"dir": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok && s != "" {
				t.Dir = d.resolvePath(s)
			}
		},
		"default": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok && s != "" && s != "-" {
				t.Default = d.resolvePath(s)
			} else if ok {
				t.Default = s
			}
		},
		"ssh_keys": func(p string, l int, v *yaml.Node) {
			if keys, ok := d.strs(p, l, v); ok {
				for i, k := range keys {
					if !strings.HasPrefix(k, "ssh-") && !strings.HasPrefix(k, "ecdsa-") && !strings.HasPrefix(k, "sk-") {
						d.errorf(l, fmt.Sprintf("%s[%d]", p, i), "must be an OpenSSH public key line (ssh-ed25519 AAAA…)")
					}
				}
				t.SSHKeys = keys
			}
		},
		"data": func(p string, l int, v *yaml.Node) {
			var m map[string]any
			if err := resolve(v).Decode(&m); err != nil {
				d.errorf(l, p, "must be a mapping of template data")
				return
			}
			t.Data = m
		},
	})
	if !ok {
		return nil
	}
	return t
}
