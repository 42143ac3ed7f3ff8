package config

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Defaults of the settings outside instance:, which ec2.Derive does not cover.
const (
	DefaultListen      = "127.0.0.1:1338"
	DefaultLifetime    = 6 * time.Hour
	DefaultRotateAfter = 1 * time.Hour
	DefaultLogLevel    = "info"
	DefaultLogFormat   = "text"
)

// Bounds of the credentials settings. The lifetime bounds are those of an STS
// role session; rotation must leave the old credentials valid for a while
// after new ones are served, as EC2 does.
const (
	MinLifetime     = 20 * time.Minute
	MaxLifetime     = 36 * time.Hour
	MinRotateAfter  = 1 * time.Minute
	RotationOverlap = 15 * time.Minute
)

// Limits on files the config refers to.
const (
	maxUserDataFile  = 1 << 20 // far above EC2's 16 KiB, so Validate reports the real size
	maxPublicKeyFile = 64 << 10
)

// File is a parsed config file. Parse fills in the defaults of everything
// outside instance:, so a caller never has to.
type File struct {
	// Listen holds host:port addresses; never empty after Parse.
	Listen []string
	// DataDir is where imds keeps its state; empty means the caller's
	// default. A relative path is resolved against the config file's
	// directory, like every path in the file.
	DataDir string
	// AllowedHosts are extra Host header names the metadata server accepts
	// (besides addresses, localhost and instance-data); "*" accepts any.
	AllowedHosts []string
	// Roles are the roles defined under roles:, in file order.
	Roles []Role
	// Instances are the instances of instances:, in file order. With them,
	// requesters that match none get 404 unless DefaultInstance names one.
	Instances       []*Instance
	DefaultInstance string
	HopDistances    []HopDistance
	// VMNetwork, if set, is the DHCP/DNS network imds runs for VMs.
	VMNetwork *VMNetwork
	// Discovery holds the sources that find instances on their own.
	Discovery Discovery
	// Templates, if set, renders user-data from templates.
	Templates   *Templates
	Identity    Identity
	Admin       Admin
	Metrics     Metrics
	Log         Log
	Credentials Credentials
	// Limits bound what clients may hold on the metadata listener; zero
	// fields mean the server's defaults.
	Limits Limits
	// Store is where run-time instances are kept (bolt in DataDir unless
	// store.etcd is set).
	Store Store
	// Instance holds the overrides of instance:; nil if the section is
	// absent or null, and then BuildInstance serves the default instance.
	Instance *Instance

	name        string         // the file name for messages
	lines       map[string]int // line of each key path, for BuildInstance's messages
	defaultLine int
}

// Identity configures how requesters are recognised besides their address.
type Identity struct {
	// TrustedProxies may attribute requests to an instance with the signed
	// X-Instance-ID headers.
	TrustedProxies []netip.Prefix
	// ProxySecret keys the HMAC-SHA256 signature of X-Instance-ID.
	ProxySecret string
	// NeighbourTable is accepted for old config files. The kernel
	// neighbour table is read whenever an instance is matched by MAC.
	NeighbourTable bool
}

// Metrics, Admin, Log and Limits are decoded by their fields' json names
// and check tags, as the instance document is (walk.go).

// Metrics configures the Prometheus metrics. They are always served on
// the admin API (/metrics); Listen adds an address of their own.
type Metrics struct {
	// Listen is an optional host:port serving /metrics without a token:
	// metrics hold no secrets, addresses or user-data.
	Listen string `json:"listen" check:"hostport"`
	// InstanceSeries bounds how many instances get request series of
	// their own (0: the default, 1000).
	InstanceSeries int `json:"instance_series" check:"min=1,max=1048576"`
}

// Admin configures the admin API.
type Admin struct {
	Socket    string `json:"socket" check:"path"`     // Unix socket path; "" means the default
	Listen    string `json:"listen" check:"hostport"` // optional TCP address; needs TokenFile
	TokenFile string `json:"token_file" check:"path"` // file holding the bearer token for Listen
	// SocketGroup, if set, is the group (name or number) whose members may
	// use the Unix socket: it is then mode 0660 with that group, not 0600.
	SocketGroup string `json:"socket_group" check:"group"`
}

// validGroupName accepts what useradd and groupadd accept as a group name
// (or a numeric group ID), so that a typo is caught before start-up.
func validGroupName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case r >= '0' && r <= '9', r == '-' && i > 0, r == '.' && i > 0:
		case r == '$' && i == len(s)-1 && i > 0:
		default:
			return false
		}
	}
	return true
}

// Log configures logging.
type Log struct {
	Level  string `json:"level" check:"enum=debug|info|warn|error"`
	Format string `json:"format" check:"enum=text|json"`
	// AccessLog is nil when the file does not say, leaving the choice to the
	// command line.
	AccessLog *bool `json:"access_log"`
}

// Limits is the limits: section: caps and times of the metadata listener
// (see imds.Limits for the defaults).
type Limits struct {
	MaxConnections          int           `json:"max_connections" check:"min=1,max=1048576"`
	MaxConnectionsPerSource int           `json:"max_connections_per_source" check:"min=1,max=1048576"`
	HeaderTimeout           time.Duration `json:"header_timeout" check:"min=100ms,max=10m"`
	BodyTimeout             time.Duration `json:"body_timeout" check:"min=100ms,max=10m"`
	IdleTimeout             time.Duration `json:"idle_timeout" check:"min=100ms,max=1h"`
}

// Credentials configures the temporary credentials served for the role.
// Parse fills both in; zero in a File built by hand means the default.
type Credentials struct {
	Lifetime time.Duration
	// RotateAfter is how long after issue new credentials are put in place;
	// at most Lifetime-RotationOverlap so that callers caching credentials
	// never hold expired ones.
	RotateAfter time.Duration
}

// Instance is the instance: section: the values the user set, applied to
// ec2.NewDefaultInstance(). Fields left out stay zero, which ec2.Derive reads
// as "derive this", so an absent key and a derived value are the same thing.
type Instance struct {
	base     *ec2.Instance
	prefix   string // path of the definition, e.g. "instance" or "instances[1]"
	line     int
	schedule []ScheduledEvent
}

// Spec returns a copy of the instance as written, before derivation.
func (i *Instance) Spec() *ec2.Instance { return i.base.Clone() }

// Default returns the configuration of `imds serve` without a config file.
func Default() *File {
	return &File{
		Listen: []string{DefaultListen},
		Log:    Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Credentials: Credentials{
			Lifetime:    DefaultLifetime,
			RotateAfter: DefaultRotateAfter,
		},
	}
}

// Load reads and parses the config file at path. Relative paths inside it
// (user_data_file, key_file, data_dir) are resolved against its directory,
// so the file means the same thing whatever the working directory.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problem: "cannot read the config file: " + errorCause(err)}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse decodes a config file strictly: an unknown key, a wrong type or a bad
// value is an error. It returns every problem, each an *Error naming the
// file, line and key, joined with errors.Join and in file order. name is only
// used in messages; baseDir resolves the relative paths in the file.
//
// Parse also derives and validates the instance (with zero DeriveOptions), so
// that a bad MAC is reported together with an unknown key rather than after
// the user fixed the first round.
func Parse(name string, data []byte, baseDir string) (*File, error) {
	return parse(name, data, baseDir, readLimited)
}

func parse(name string, data []byte, baseDir string, read readFunc) (*File, error) {
	d := newDecoder(name, baseDir, read)
	f := Default()
	f.name = name
	if root := d.document(data); root != nil {
		d.top(root, f)
	}
	f.lines = d.lines
	if !d.exhausted() {
		_, errs := f.build(ec2.DeriveOptions{})
		_, more := f.buildAll(ec2.DeriveOptions{})
		errs = append(errs, more...)
		for _, e := range errs {
			if !d.isCovered(e.Field) {
				d.errs = append(d.errs, e)
			}
		}
	}
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	return f, nil
}

// BuildInstance returns the instance f describes: ec2.NewDefaultInstance()
// with the overrides of f.Instance, derived with opt and validated. Each
// problem is an *Error at the line of the key it concerns, or of the closest
// enclosing key for a derived value. A nil f gives the default instance.
func (f *File) BuildInstance(opt ec2.DeriveOptions) (*ec2.Instance, error) {
	inst, errs := f.build(opt)
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return inst, nil
}

func (f *File) build(opt ec2.DeriveOptions) (*ec2.Instance, []*Error) {
	ci := &Instance{base: ec2.NewDefaultInstance(), prefix: "instance"}
	if f != nil && f.Instance != nil && f.Instance.base != nil {
		ci = f.Instance
	}
	return f.buildOne(ci, opt)
}

// buildOne derives and validates one instance definition, reporting problems
// at the lines of its keys.
func (f *File) buildOne(ci *Instance, opt ec2.DeriveOptions) (*ec2.Instance, []*Error) {
	inst := ci.base.Clone()
	var file string
	var lines map[string]int
	if f != nil {
		file, lines = f.name, f.lines
	}
	if f != nil && inst.Role != nil {
		// A role defined under roles: supplies the instance profile unless
		// the instance names one itself.
		if r, ok := f.RoleNamed(inst.Role.Name); ok {
			if inst.Role.InstanceProfileName == "" {
				inst.Role.InstanceProfileName = r.InstanceProfileName
			}
			if inst.Role.InstanceProfileID == "" {
				inst.Role.InstanceProfileID = r.InstanceProfileID
			}
		}
	}
	ec2.Derive(inst, opt)
	inst.Origin = ec2.OriginConfig
	var errs []*Error
	for _, fe := range inst.Validate() {
		path := sub(ci.prefix, fe.Field)
		errs = append(errs, &Error{File: file, Line: lineOf(lines, path), Field: path, Problem: fe.Problem})
	}
	return inst, errs
}

// BuildInstances returns the instances of instances:, derived and validated,
// and checks that names and source addresses are not shared.
func (f *File) BuildInstances(opt ec2.DeriveOptions) ([]*ec2.Instance, error) {
	insts, errs := f.buildAll(opt)
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return insts, nil
}

func (f *File) buildAll(opt ec2.DeriveOptions) ([]*ec2.Instance, []*Error) {
	var out []*ec2.Instance
	var errs []*Error
	names := map[string]int{}
	addrs := map[string]string{}
	for i, ci := range f.Instances {
		inst, e := f.buildOne(ci, opt)
		errs = append(errs, e...)
		at := func(field string) *Error {
			path := sub(ci.prefix, field)
			return &Error{File: f.name, Line: lineOf(f.lines, path), Field: path}
		}
		if j, dup := names[inst.Name]; dup {
			e := at("name")
			e.Problem = fmt.Sprintf("%q is already the name of instances[%d]", inst.Name, j)
			errs = append(errs, e)
		}
		names[inst.Name] = i
		for n, a := range inst.SourceAddrs {
			if other, dup := addrs[a]; dup {
				e := at(fmt.Sprintf("source_addresses[%d]", n))
				e.Problem = fmt.Sprintf("%s is already an address of instance %s", a, other)
				errs = append(errs, e)
			}
			addrs[a] = inst.Name
		}
		out = append(out, inst)
	}
	if f.DefaultInstance != "" {
		if _, ok := names[f.DefaultInstance]; !ok {
			errs = append(errs, &Error{File: f.name, Line: max(f.defaultLine, 1), Field: "default_instance",
				Problem: fmt.Sprintf("%q is not the name of one of instances", f.DefaultInstance)})
		}
	}
	if f.Instance != nil && len(f.Instances) > 0 {
		errs = append(errs, &Error{File: f.name, Line: lineOf(f.lines, "instances"), Field: "instances",
			Problem: "cannot be combined with instance:; list that instance under instances: (and name it in default_instance)"})
	}
	return out, errs
}

// lineOf finds the line of path or of its closest ancestor in the file: a
// derived value has no key of its own. 0 without a file.
func lineOf(lines map[string]int, path string) int {
	if lines == nil {
		return 0
	}
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 1
}

// readLimited reads a file referenced by the config, refusing huge ones so
// that a mistaken path (a disk image, /dev/zero) cannot exhaust memory.
func readLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// resolvePath interprets a path written in the config file.
func (d *decoder) resolvePath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.baseDir, p)
}

// Name is the file name used in messages ("" for Default()).
func (f *File) Name() string { return f.name }

// sub appends a field path (which may hold dots and indexes) to prefix.
func sub(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}
