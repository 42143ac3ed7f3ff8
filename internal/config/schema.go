package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// top decodes the top-level mapping into f.
func (d *decoder) top(root *yaml.Node, f *File) {
	root = resolve(root)
	if isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root.Line, "", "the top level must be a mapping of settings, got %s", describe(root))
		return
	}
	d.misplaced = map[string]string{}
	for _, k := range d.keyNames(reflect.TypeFor[InstanceDoc]()) {
		d.misplaced[k] = "instance"
	}

	// rotate_after is checked against lifetime once both are known: keys
	// may come in any order.
	var (
		lifetimeBad            bool
		rotate                 time.Duration
		rotateSet              bool
		rotatePath, rotateLine = "", 0
	)
	d.mapping("", 1, root, schema{
		"listen": func(p string, line int, v *yaml.Node) {
			if addrs, ok := d.listen(p, line, v); ok {
				f.Listen = addrs
			}
		},
		"allowed_hosts": func(p string, line int, v *yaml.Node) {
			if hosts, ok := d.strs(p, line, v); ok {
				for n, h := range hosts {
					if h == "" || strings.ContainsAny(h, " /:\t") {
						d.errorf(line, fmt.Sprintf("%s[%d]", p, n), "must be a host name without port (or \"*\" for any), got %q", h)
						ok = false
					}
				}
				if ok {
					f.AllowedHosts = hosts
				}
			}
		},
		"data_dir": func(p string, line int, v *yaml.Node) {
			if s, ok := d.str(p, line, v); ok && s != "" {
				f.DataDir = d.resolvePath(s)
			}
		},
		"log": d.section(&f.Log),
		"credentials": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"lifetime": func(p string, line int, v *yaml.Node) {
					if lt, ok := d.duration(p, line, v, MinLifetime, MaxLifetime); ok {
						f.Credentials.Lifetime = lt
					} else if !isNull(resolve(v)) {
						lifetimeBad = true
					}
				},
				"rotate_after": func(p string, line int, v *yaml.Node) {
					rotatePath, rotateLine = p, line
					rotate, rotateSet = d.duration(p, line, v, MinRotateAfter, MaxLifetime-RotationOverlap)
				},
			})
		},
		"limits": d.section(&f.Limits),
		"user_data_templates": func(p string, line int, v *yaml.Node) {
			f.Templates = d.templates(p, line, v)
		},
		"discovery": func(p string, line int, v *yaml.Node) { d.discovery(p, line, v, f) },
		"vm_network": func(p string, line int, v *yaml.Node) {
			f.VMNetwork = d.vmNetwork(p, line, v)
		},
		"roles": func(p string, line int, v *yaml.Node) {
			d.roles(p, line, v, f)
		},
		"instance": func(p string, line int, v *yaml.Node) {
			f.Instance, _ = d.instance(p, line, v)
		},
		"instances": func(p string, line int, v *yaml.Node) {
			f.Instances = d.instanceList(p, line, v)
		},
		"default_instance": func(p string, line int, v *yaml.Node) {
			if s, ok := d.nameValue(p, line, v); ok {
				f.DefaultInstance = s
				f.defaultLine = line
			}
		},
		"identity": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"trusted_proxies": func(p string, l int, v *yaml.Node) {
					if cidrs, ok := d.strs(p, l, v); ok {
						for i, c := range cidrs {
							pfx, err := netip.ParsePrefix(c)
							if err != nil {
								if a, aerr := netip.ParseAddr(c); aerr == nil {
									pfx, err = a.Prefix(a.BitLen())
								}
							}
							if err != nil {
								d.errorf(l, fmt.Sprintf("%s[%d]", p, i), "must be an address or CIDR, got %q", c)
								continue
							}
							f.Identity.TrustedProxies = append(f.Identity.TrustedProxies, pfx.Masked())
						}
					}
				},
				"proxy_secret": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok {
						if len(s) < 16 {
							d.errorf(l, p, "must be at least 16 characters")
						}
						f.Identity.ProxySecret = s
					}
				},
				"neighbour_table": func(p string, l int, v *yaml.Node) {
					if on, ok := d.boolean(p, l, v); ok {
						f.Identity.NeighbourTable = on
					}
				},
			})
		},
		"hop_distances": func(p string, l int, v *yaml.Node) { f.HopDistances = d.hopDistances(p, l, v) },
		"store":         func(p string, l int, v *yaml.Node) { d.store(p, l, v, f) },
		"metrics":       d.section(&f.Metrics),
		"admin":         d.section(&f.Admin),
	})

	upper := f.Credentials.Lifetime - RotationOverlap
	switch {
	case !rotateSet:
		// A short lifetime brings the default rotation forward rather than
		// making the default invalid.
		f.Credentials.RotateAfter = min(DefaultRotateAfter, upper)
	case rotate > upper && !lifetimeBad:
		d.errorf(rotateLine, rotatePath, "must be at most %s (lifetime %s minus %s), got %s",
			fmtDuration(upper), fmtDuration(f.Credentials.Lifetime), fmtDuration(RotationOverlap), fmtDuration(rotate))
	default:
		f.Credentials.RotateAfter = rotate
	}
}

// listen decodes one host:port or a list of them.
func (d *decoder) listen(path string, line int, v *yaml.Node) ([]string, bool) {
	rv := resolve(v)
	switch {
	case isNull(rv):
		return nil, false
	case rv.Kind == yaml.ScalarNode:
		s, ok := d.str(path, line, v)
		return []string{s}, ok && d.hostPort(path, line, s)
	case rv.Kind != yaml.SequenceNode:
		d.errorf(line, path, "must be host:port or a list of them, got %s", describe(rv))
		return nil, false
	}
	var addrs []string
	valid := true
	d.list(path, line, v, func(_ int, p string, l int, it *yaml.Node) {
		s, ok := d.str(p, l, it)
		if !ok && isNull(resolve(it)) {
			d.errorf(l, p, "must be host:port, got null")
		}
		if !ok || !d.hostPort(p, l, s) {
			valid = false
			return
		}
		addrs = append(addrs, s)
	})
	if valid && len(addrs) == 0 {
		d.errorf(line, path, "must list at least one address")
		return nil, false
	}
	return addrs, valid
}

// hostPort checks a listen address now rather than when the server binds it,
// so that it is reported with its line along with every other problem.
func (d *decoder) hostPort(path string, line int, s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errorf(line, path, "must be host:port like %s, got %q", DefaultListen, s)
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		d.errorf(line, path, "port must be a number from 0 to 65535, got %q", port)
		return false
	}
	return true
}

// instanceList decodes a list of instance definitions; each needs a name.
func (d *decoder) instanceList(path string, line int, v *yaml.Node) []*Instance {
	var out []*Instance
	if isNull(resolve(v)) {
		return nil
	}
	if resolve(v).Kind != yaml.SequenceNode {
		d.errorf(line, path, "must be a list of instances, got %s", describe(resolve(v)))
		return nil
	}
	d.list(path, line, v, func(i int, p string, l int, item *yaml.Node) {
		if ci := d.instanceDef(p, l, item); ci != nil {
			out = append(out, ci)
		}
	})
	return out
}

// instanceDef decodes one named instance definition at path.
func (d *decoder) instanceDef(path string, line int, v *yaml.Node) *Instance {
	if isNull(resolve(v)) {
		d.errorf(line, path, "must be an instance definition, got null")
		return nil
	}
	ci, seen := d.instance(path, line, v)
	if ci == nil {
		return nil
	}
	if _, named := seen["name"]; !named {
		d.errorf(line, sub(path, "name"), "is required for each of several instances")
	}
	ci.line = line
	return ci
}

// instance decodes the instance document v at path over the default
// instance, and applies what depends on more than one key. It returns nil
// if v is null or not a mapping, and the keys written.
func (d *decoder) instance(path string, line int, v *yaml.Node) (*Instance, map[string]keyAt) {
	if d.defaultDoc == nil {
		d.defaultDoc = docOf(ec2.NewDefaultInstance())
	}
	// A shallow copy: decoding replaces values, never writes through them.
	doc := new(InstanceDoc)
	*doc = *d.defaultDoc
	seen, ok := d.decodeStruct(path, line, v, reflect.ValueOf(doc).Elem())
	if !ok {
		return nil, seen
	}
	inst := doc.instance()

	var shorthands []keyAt
	for _, f := range d.fieldsOf(reflect.TypeFor[InstanceDoc]()) {
		if k, ok := seen[f.name]; ok && f.shorthand != "" && !k.null {
			shorthands = append(shorthands, k)
		}
	}
	if len(shorthands) > 0 {
		if ni, ok := seen["network_interfaces"]; ok {
			for _, s := range shorthands {
				d.errorf(s.line, s.path, "cannot be combined with network_interfaces (line %d); set it in network_interfaces[0]", ni.line)
			}
		} else {
			inst.Interfaces = []ec2.NetworkInterface{doc.primary()}
		}
	}

	// Of the three sources of user data, one at most.
	var sources []keyAt
	if doc.UserData != nil {
		sources = append(sources, seen["user_data"])
	}
	if doc.UserDataBase64 != nil {
		sources = append(sources, seen["user_data_base64"])
	}
	if doc.UserDataFile != "" {
		file := seen["user_data_file"]
		sources = append(sources, file)
		d.mark(join(path, "user_data"), file.line)
	}
	slices.SortStableFunc(sources, func(a, b keyAt) int { return a.line - b.line })
	for _, s := range sources[min(1, len(sources)):] {
		d.errorf(s.line, s.path, "cannot be combined with %s (line %d); choose one",
			strings.TrimPrefix(sources[0].path, path+"."), sources[0].line)
	}
	if len(sources) == 1 && doc.UserDataFile != "" {
		file := d.resolvePath(string(doc.UserDataFile))
		data, err := d.read(file, maxUserDataFile)
		if err != nil {
			d.errorf(sources[0].line, sources[0].path, "%s", readError(file, err))
		} else {
			inst.UserData = nonEmpty(data)
		}
	}
	return &Instance{base: inst, prefix: path, schedule: doc.Schedule}, seen
}

// nonEmpty maps empty user data to none: EC2 has no such thing as empty user
// data, and a nil slice makes the server answer 404 as EC2 does.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
