package config

import (
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"net/netip"
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
	for k := range (&instanceBuilder{}).schema() {
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
		"log": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"level": func(p string, line int, v *yaml.Node) {
					if s, ok := d.enum(p, line, v, "debug", "info", "warn", "error"); ok {
						f.Log.Level = s
					}
				},
				"format": func(p string, line int, v *yaml.Node) {
					if s, ok := d.enum(p, line, v, "text", "json"); ok {
						f.Log.Format = s
					}
				},
				"access_log": func(p string, line int, v *yaml.Node) {
					if b, ok := d.boolean(p, line, v); ok {
						f.Log.AccessLog = &b
					}
				},
			})
		},
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
		"limits": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"max_connections": func(p string, l int, v *yaml.Node) {
					if n, ok := d.integer(p, l, v, 1, 1<<20); ok {
						f.Limits.MaxConnections = n
					}
				},
				"max_connections_per_source": func(p string, l int, v *yaml.Node) {
					if n, ok := d.integer(p, l, v, 1, 1<<20); ok {
						f.Limits.MaxConnectionsPerSource = n
					}
				},
				"header_timeout": func(p string, l int, v *yaml.Node) {
					if t, ok := d.duration(p, l, v, 100*time.Millisecond, 10*time.Minute); ok {
						f.Limits.HeaderTimeout = t
					}
				},
				"body_timeout": func(p string, l int, v *yaml.Node) {
					if t, ok := d.duration(p, l, v, 100*time.Millisecond, 10*time.Minute); ok {
						f.Limits.BodyTimeout = t
					}
				},
				"idle_timeout": func(p string, l int, v *yaml.Node) {
					if t, ok := d.duration(p, l, v, 100*time.Millisecond, time.Hour); ok {
						f.Limits.IdleTimeout = t
					}
				},
			})
		},
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
			b := &instanceBuilder{d: d, inst: ec2.NewDefaultInstance(), prefix: p}
			if d.mapping(p, line, v, b.schema()) {
				f.Instance = b.finish()
			}
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
		"metrics": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"listen": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && d.hostPort(p, l, s) {
						f.Metrics.Listen = s
					}
				},
				"instance_series": func(p string, l int, v *yaml.Node) {
					if n, ok := d.integer(p, l, v, 1, 1<<20); ok {
						f.Metrics.InstanceSeries = n
					}
				},
			})
		},
		"admin": func(p string, line int, v *yaml.Node) {
			d.mapping(p, line, v, schema{
				"socket": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && s != "" {
						f.Admin.Socket = d.resolvePath(s)
					}
				},
				"listen": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && d.hostPort(p, l, s) {
						f.Admin.Listen = s
					}
				},
				"token_file": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && s != "" {
						f.Admin.TokenFile = d.resolvePath(s)
					}
				},
				"socket_group": func(p string, l int, v *yaml.Node) {
					if s, ok := d.str(p, l, v); ok && s != "" {
						if !validGroupName(s) {
							d.errorf(l, p, "%q is not a group name or number", s)
							return
						}
						f.Admin.SocketGroup = s
					}
				},
			})
		},
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

// instanceBuilder decodes instance: into an ec2.Instance that starts as
// ec2.NewDefaultInstance(), remembering what needs the whole section to
// decide (shorthands, user data source, region).
type instanceBuilder struct {
	d    *decoder
	inst *ec2.Instance
	// prefix is the path of the instance's mapping: "instance",
	// "instances[2]", or "" for a document of its own.
	prefix   string
	schedule []ScheduledEvent

	regionSet, zoneSet bool

	// The shorthands describe interface 0 when network_interfaces is absent.
	primary     ec2.NetworkInterface
	shorthands  []keyAt
	interfaces  keyAt
	userData    keyAt
	userDataSrc []byte
	dataFile    keyAt
	dataPath    string
}

// keyAt is a key seen in the file; line 0 means not seen.
type keyAt struct {
	path string
	line int
}

func (b *instanceBuilder) str(dst *string) field { return b.d.into(dst) }

// name returns a field decoder for an instance name: a YAML or JSON string
// (not a number: `{"name":123}` is a mistake, not the name "123") in the
// grammar of ec2.CheckName.
func (d *decoder) name(dst *string) field {
	return func(p string, line int, v *yaml.Node) {
		if s, ok := d.nameValue(p, line, v); ok {
			*dst = s
		}
	}
}

func (d *decoder) nameValue(p string, line int, v *yaml.Node) (string, bool) {
	rv := resolve(v)
	if rv.Kind != yaml.ScalarNode || rv.ShortTag() != "!!str" {
		if rv.Kind == yaml.ScalarNode && isText(rv) {
			d.errorf(line, p, "must be a string, got %s (quote it)", describe(rv))
		} else {
			d.errorf(line, p, "must be a string, got %s", describe(rv))
		}
		return "", false
	}
	if err := ec2.CheckName(rv.Value); err != nil {
		d.errorf(line, p, "%s", ec2.ErrorMessage(err))
		return "", false
	}
	return rv.Value, true
}

// into returns a field decoder that stores a text value in dst.
func (d *decoder) into(dst *string) field {
	return func(p string, line int, v *yaml.Node) {
		if s, ok := d.str(p, line, v); ok {
			*dst = s
		}
	}
}

func (b *instanceBuilder) strs(dst *[]string) field {
	return func(p string, line int, v *yaml.Node) {
		if s, ok := b.d.strs(p, line, v); ok {
			*dst = s
		}
	}
}

// short decodes a shorthand for interface 0 with set.
func (b *instanceBuilder) short(target string, set func(p string, line int, v *yaml.Node)) field {
	return func(p string, line int, v *yaml.Node) {
		if isNull(resolve(v)) {
			return
		}
		b.shorthands = append(b.shorthands, keyAt{p, line})
		// ec2.Validate names interface 0's field; point it at the shorthand.
		b.d.mark(sub(b.prefix, "network_interfaces[0]."+target), line)
		set(p, line, v)
	}
}

func (b *instanceBuilder) schema() schema {
	d, inst := b.d, b.inst
	if inst == nil {
		// Only the key names are wanted (for hints).
		inst = &ec2.Instance{}
	}
	return schema{
		"name":                 d.name(&inst.Name),
		"instance_id":          b.str(&inst.ID),
		"account_id":           b.str(&inst.AccountID),
		"region":               func(p string, l int, v *yaml.Node) { b.regionSet = true; b.str(&inst.Region)(p, l, v) },
		"availability_zone":    func(p string, l int, v *yaml.Node) { b.zoneSet = true; b.str(&inst.AvailabilityZone)(p, l, v) },
		"availability_zone_id": b.str(&inst.AvailabilityZoneID),
		"instance_type":        b.str(&inst.InstanceType),
		"architecture":         b.str(&inst.Architecture),
		"ami_id":               b.str(&inst.ImageID),
		"ami_launch_index": func(p string, l int, v *yaml.Node) {
			if n, ok := d.integer(p, l, v, 0, math.MaxInt32); ok {
				inst.AMILaunchIndex = n
			}
		},
		"ami_manifest_path":   b.str(&inst.AMIManifestPath),
		"ancestor_ami_ids":    b.strs(&inst.AncestorAMIIDs),
		"kernel_id":           b.str(&inst.KernelID),
		"ramdisk_id":          b.str(&inst.RamdiskID),
		"product_codes":       b.strs(&inst.ProductCodes),
		"billing_products":    b.strs(&inst.BillingProducts),
		"reservation_id":      b.str(&inst.ReservationID),
		"profile":             b.str(&inst.Profile),
		"instance_life_cycle": b.str(&inst.LifeCycle),
		"instance_action":     b.str(&inst.InstanceAction),
		"pending_time": func(p string, l int, v *yaml.Node) {
			s, ok := d.str(p, l, v)
			if !ok {
				return
			}
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				d.errorf(l, p, "must be an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got %q", s)
				return
			}
			inst.PendingTime = t
		},
		"monitoring": func(p string, l int, v *yaml.Node) {
			if on, ok := d.boolean(p, l, v); ok {
				inst.Monitoring = on
			}
		},
		"partition":                          b.str(&inst.Partition),
		"domain":                             b.str(&inst.Domain),
		"hypervisor":                         b.str(&inst.Hypervisor),
		"autoscaling_target_lifecycle_state": b.str(&inst.AutoscalingState),
		"placement": func(p string, l int, v *yaml.Node) {
			d.mapping(p, l, v, schema{
				"group_name": b.str(&inst.Placement.GroupName),
				"host_id":    b.str(&inst.Placement.HostID),
				"partition_number": func(p string, l int, v *yaml.Node) {
					if n, ok := d.integer(p, l, v, 1, math.MaxInt32); ok {
						inst.Placement.PartitionNumber = n
					}
				},
			})
		},

		"mac": b.short("mac", b.str(&b.primary.MAC)),
		"local_ipv4": b.short("local_ipv4s", func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok && s != "" {
				b.primary.PrivateIPv4s = []string{s}
			}
		}),
		"public_ipv4": b.short("public_ipv4s", func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				// Empty but not nil: ec2.Derive then gives no public address.
				b.primary.PublicIPv4s = []string{}
				if s != "" {
					b.primary.PublicIPv4s = []string{s}
				}
			}
		}),
		"ipv6": b.short("ipv6s", func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok && s != "" {
				b.primary.IPv6s = []string{s}
			}
		}),
		"security_groups": b.short("security_groups", func(p string, l int, v *yaml.Node) {
			if g, ok := d.securityGroups(p, l, v); ok {
				b.primary.SecurityGroups = g
			}
		}),
		"network_interfaces": func(p string, l int, v *yaml.Node) {
			b.interfaces = keyAt{p, l}
			d.list(p, l, v, func(_ int, ip string, il int, it *yaml.Node) {
				inst.Interfaces = append(inst.Interfaces, d.networkInterface(ip, il, it))
			})
		},

		"block_devices": func(p string, l int, v *yaml.Node) {
			rv := resolve(v)
			if isNull(rv) {
				return
			}
			if rv.Kind != yaml.MappingNode {
				d.errorf(l, p, "must be a mapping of names to devices, got %s", describe(rv))
				return
			}
			devs := []ec2.BlockDevice{}
			for i, e := range d.entries(rv, p) {
				// ec2.Validate names devices by position.
				d.mark(fmt.Sprintf("%s[%d]", p, i), e.line)
				dev, ok := d.str(join(p, e.name), e.line, e.value)
				if !ok && !isNull(resolve(e.value)) {
					continue
				}
				devs = append(devs, ec2.BlockDevice{Name: e.name, Device: dev})
			}
			inst.BlockDevices = devs
		},
		"public_keys": func(p string, l int, v *yaml.Node) {
			var keys []ec2.PublicKey
			if d.list(p, l, v, func(_ int, kp string, kl int, it *yaml.Node) {
				keys = append(keys, d.publicKey(kp, kl, it))
			}) {
				inst.PublicKeys = keys
			}
		},
		"tags": func(p string, l int, v *yaml.Node) {
			rv := resolve(v)
			if isNull(rv) {
				return
			}
			if rv.Kind != yaml.MappingNode {
				d.errorf(l, p, "must be a mapping of keys to values, got %s", describe(rv))
				return
			}
			tags := []ec2.Tag{}
			for _, e := range d.entries(rv, p) {
				tv := resolve(e.value)
				if !isText(tv) && !isNull(tv) {
					d.errorf(e.line, p, "value of %q must be a string, got %s", e.name, describe(tv))
					continue
				}
				// A null value is an empty tag value, which EC2 allows; the
				// literal text of a number or boolean is what the user wrote.
				val := tv.Value
				if isNull(tv) {
					val = ""
				}
				tags = append(tags, ec2.Tag{Key: e.name, Value: val})
			}
			inst.Tags = tags
		},
		"tags_in_metadata": func(p string, l int, v *yaml.Node) {
			if on, ok := d.boolean(p, l, v); ok {
				inst.Metadata.TagsInMetadata = on
			}
		},

		"user_data": func(p string, l int, v *yaml.Node) {
			rv := resolve(v)
			if isNull(rv) {
				return
			}
			b.userData = keyAt{p, l}
			if rv.Kind == yaml.ScalarNode && rv.ShortTag() == "!!binary" {
				data, err := binary(rv)
				if err != nil {
					d.errorf(l, p, "!!binary value is not valid base64")
					return
				}
				b.userDataSrc = data
				return
			}
			if s, ok := d.str(p, l, v); ok {
				b.userDataSrc = []byte(s)
			}
		},
		// user_data_base64 carries binary user data in JSON documents.
		"user_data_base64": func(p string, l int, v *yaml.Node) {
			s, ok := d.str(p, l, v)
			if !ok {
				return
			}
			if b.userData.line > 0 {
				d.errorf(l, p, "cannot be combined with user_data (line %d); choose one", b.userData.line)
				return
			}
			data, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				d.errorf(l, p, "must be standard base64")
				return
			}
			b.userData = keyAt{p, l}
			b.userDataSrc = data
		},
		"user_data_file": func(p string, l int, v *yaml.Node) {
			s, ok := d.str(p, l, v)
			if !ok {
				return
			}
			if s == "" {
				d.errorf(l, p, "must be a file path, got an empty string")
				return
			}
			b.dataFile, b.dataPath = keyAt{p, l}, s
			d.mark(join(b.prefix, "user_data"), l)
		},

		"role": func(p string, l int, v *yaml.Node) {
			if r, ok := d.role(p, l, v); ok {
				inst.Role = r
			}
		},
		"imdsv2": func(p string, l int, v *yaml.Node) {
			if s, ok := d.enum(p, l, v, ec2.TokensOptional, ec2.TokensRequired); ok {
				inst.Metadata.HTTPTokens = s
			}
		},
		"http_endpoint": func(p string, l int, v *yaml.Node) {
			if s, ok := d.enum(p, l, v, ec2.EndpointEnabled, ec2.EndpointDisabled); ok {
				inst.Metadata.HTTPEndpoint = s
			}
		},
		"hop_limit": func(p string, l int, v *yaml.Node) {
			if n, ok := d.integer(p, l, v, 1, 64); ok {
				inst.Metadata.PutResponseHopLimit = n
			}
		},
		"source_addresses": b.strs(&inst.SourceAddrs),
		"match_mac": func(p string, l int, v *yaml.Node) {
			if on, ok := d.boolean(p, l, v); ok {
				inst.MatchMAC = on
			}
		},
		// origin is shown in documents the server writes; what a document
		// says is ignored, the server decides.
		"origin": func(p string, l int, v *yaml.Node) {
			d.enum(p, l, v, ec2.OriginConfig, ec2.OriginAPI, ec2.OriginDocker)
		},
		// events and faults are run-time state the server shows; they are
		// changed with imds event and imds fault, not through documents.
		"events": func(string, int, *yaml.Node) {},
		"schedule": func(p string, l int, v *yaml.Node) {
			b.schedule = d.scheduleList(p, l, v)
		},
		"faults": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				f, err := ec2.ParseFaults(s)
				if err != nil {
					d.errorf(l, p, "%s", ec2.ErrorMessage(err))
					return
				}
				inst.Faults = f
			}
		},
	}
}

// finish applies what depends on more than one key.
func (b *instanceBuilder) finish() *Instance {
	d, inst := b.d, b.inst

	if b.zoneSet && !b.regionSet && inst.AvailabilityZone != "" {
		// The default instance names us-east-1; a zone alone must move the
		// region with it, which ec2.Derive does only for an empty region.
		inst.Region = ""
	}

	if len(b.shorthands) > 0 {
		if b.interfaces.line > 0 {
			for _, s := range b.shorthands {
				d.errorf(s.line, s.path, "cannot be combined with network_interfaces (line %d); set it in network_interfaces[0]", b.interfaces.line)
			}
		} else {
			inst.Interfaces = []ec2.NetworkInterface{b.primary}
		}
	}

	switch {
	case b.userData.line > 0 && b.dataFile.line > 0:
		first, second := b.userData, b.dataFile
		if second.line < first.line {
			first, second = second, first
		}
		d.errorf(second.line, second.path, "cannot be combined with %s (line %d); choose one",
			strings.TrimPrefix(first.path, b.prefix+"."), first.line)
	case b.dataFile.line > 0:
		path := d.resolvePath(b.dataPath)
		data, err := d.read(path, maxUserDataFile)
		if err != nil {
			d.errorf(b.dataFile.line, b.dataFile.path, "%s", readError(path, err))
			break
		}
		inst.UserData = nonEmpty(data)
	case b.userData.line > 0:
		inst.UserData = nonEmpty(b.userDataSrc)
	}
	return &Instance{base: inst, prefix: b.prefix, schedule: b.schedule}
}

// nonEmpty maps empty user data to none: EC2 has no such thing as empty user
// data, and a nil slice makes the server answer 404 as EC2 does.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// networkInterface decodes one item of network_interfaces.
func (d *decoder) networkInterface(path string, line int, v *yaml.Node) ec2.NetworkInterface {
	var ni ec2.NetworkInterface
	if isNull(resolve(v)) {
		d.errorf(line, path, "must be a mapping, got null; use {} for an interface with derived values")
		return ni
	}
	str := d.into
	strs := func(dst *[]string) field {
		return func(p string, l int, v *yaml.Node) {
			if s, ok := d.strs(p, l, v); ok {
				*dst = s
			}
		}
	}
	num := func(dst *int) field {
		return func(p string, l int, v *yaml.Node) {
			if n, ok := d.integer(p, l, v, 0, math.MaxInt32); ok {
				*dst = n
			}
		}
	}
	d.mapping(path, line, v, schema{
		"device_number":      num(&ni.DeviceNumber),
		"network_card_index": num(&ni.NetworkCardIndex),
		"interface_id":       str(&ni.ID),
		"mac":                str(&ni.MAC),
		"owner_id":           str(&ni.OwnerID),
		"local_ipv4s":        strs(&ni.PrivateIPv4s),
		"public_ipv4s":       strs(&ni.PublicIPv4s),
		"ipv6s":              strs(&ni.IPv6s),
		"local_hostname":     str(&ni.LocalHostname),
		"public_hostname":    str(&ni.PublicHostname),
		"security_groups": func(p string, l int, v *yaml.Node) {
			if g, ok := d.securityGroups(p, l, v); ok {
				ni.SecurityGroups = g
			}
		},
		"subnet_id":         str(&ni.SubnetID),
		"subnet_ipv4_cidr":  str(&ni.SubnetIPv4CIDR),
		"subnet_ipv6_cidrs": strs(&ni.SubnetIPv6CIDRs),
		"vpc_id":            str(&ni.VPCID),
		"vpc_ipv4_cidr":     str(&ni.VPCIPv4CIDR),
		"vpc_ipv4_cidrs":    strs(&ni.VPCIPv4CIDRs),
		"vpc_ipv6_cidrs":    strs(&ni.VPCIPv6CIDRs),
	})
	return ni
}

// securityGroups decodes a list of {name, id} mappings or plain names.
func (d *decoder) securityGroups(path string, line int, v *yaml.Node) ([]ec2.SecurityGroup, bool) {
	var groups []ec2.SecurityGroup
	valid := true
	present := d.list(path, line, v, func(_ int, p string, l int, it *yaml.Node) {
		ri := resolve(it)
		switch {
		case ri.Kind == yaml.MappingNode:
			var g ec2.SecurityGroup
			named := false
			d.mapping(p, l, it, schema{
				"name": func(p string, l int, v *yaml.Node) { named = true; d.into(&g.Name)(p, l, v) },
				"id":   d.into(&g.ID),
			})
			if !named {
				d.errorf(l, p+".name", "is required")
				valid = false
			}
			groups = append(groups, g)
		case isText(ri) && ri.Value != "":
			groups = append(groups, ec2.SecurityGroup{Name: ri.Value})
		default:
			d.errorf(l, p, "must be a group name or {name, id}, got %s", describe(ri))
			valid = false
		}
	})
	return groups, present && valid
}

// publicKey decodes one item of public_keys.
func (d *decoder) publicKey(path string, line int, v *yaml.Node) ec2.PublicKey {
	var k ec2.PublicKey
	if rv := resolve(v); rv.Kind != yaml.MappingNode {
		d.errorf(line, path, "must be a mapping {name, key} or {name, key_file}, got %s", describe(rv))
		return k
	}
	var key, file keyAt
	var filePath string
	d.mapping(path, line, v, schema{
		"name": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				k.Name = s
			}
		},
		"key": func(p string, l int, v *yaml.Node) {
			if !isNull(resolve(v)) {
				key = keyAt{p, l}
			}
			if s, ok := d.str(p, l, v); ok {
				k.Key = s
			}
		},
		"key_file": func(p string, l int, v *yaml.Node) {
			if !isNull(resolve(v)) {
				file = keyAt{p, l}
				d.mark(path+".key", l)
			}
			if s, ok := d.str(p, l, v); ok {
				filePath = s
			}
		},
	})
	switch {
	case key.line > 0 && file.line > 0:
		second := file
		if key.line > file.line {
			second = key
		}
		d.errorf(second.line, second.path, "key and key_file cannot both be set; choose one")
		d.covered[path+".key"] = true
	case file.line > 0 && filePath != "":
		resolved := d.resolvePath(filePath)
		data, err := d.read(resolved, maxPublicKeyFile)
		if err != nil {
			d.errorf(file.line, file.path, "%s", readError(resolved, err))
			d.covered[path+".key"] = true
			break
		}
		// Key files end with a newline that is not part of the key.
		k.Key = strings.TrimSpace(string(data))
	case key.line == 0 && file.line == 0:
		d.errorf(line, path, "needs key or key_file")
	case file.line > 0:
		d.covered[path+".key"] = true // key_file: null or a bad type, already reported
	}
	return k
}

// role decodes role: a name, a mapping, or null/"" for an instance without
// an instance profile.
func (d *decoder) role(path string, line int, v *yaml.Node) (*ec2.Role, bool) {
	rv := resolve(v)
	switch {
	case isNull(rv):
		return nil, true
	case rv.Kind == yaml.MappingNode:
		r := &ec2.Role{}
		named := false
		d.mapping(path, line, v, schema{
			"name":                  func(p string, l int, v *yaml.Node) { named = true; d.into(&r.Name)(p, l, v) },
			"instance_profile_name": d.into(&r.InstanceProfileName),
			"instance_profile_id":   d.into(&r.InstanceProfileID),
		})
		if !named {
			// Keep the default role rather than also failing validation.
			d.errorf(line, path+".name", "is required")
			return nil, false
		}
		return r, true
	case isText(rv):
		if rv.Value == "" {
			return nil, true
		}
		return &ec2.Role{Name: rv.Value}, true
	}
	d.errorf(line, path, "must be a role name, a mapping {name, instance_profile_name, instance_profile_id} or null, got %s", describe(rv))
	return nil, false
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
	b := &instanceBuilder{d: d, inst: ec2.NewDefaultInstance(), prefix: path}
	named := false
	s := b.schema()
	name := s["name"]
	s["name"] = func(p string, l int, v *yaml.Node) { named = true; name(p, l, v) }
	if !d.mapping(path, line, v, s) {
		return nil
	}
	if !named {
		d.errorf(line, sub(path, "name"), "is required for each of several instances")
	}
	ci := b.finish()
	ci.line = line
	return ci
}
