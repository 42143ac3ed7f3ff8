// Package daemon is `imds serve` as a value: Open starts every component
// a Config asks for, Close stops them in the reverse order. cmd/imds runs
// it until a signal; tests (and, later, imdstest) run it in-process on
// ":0" addresses.
package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/audit"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds"
	"github.com/imdsdev/imds/internal/creds/fake"
	"github.com/imdsdev/imds/internal/discovery/docker"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/fastlog"
	"github.com/imdsdev/imds/internal/identity"
	"github.com/imdsdev/imds/internal/imds"
	"github.com/imdsdev/imds/internal/libvirt"
	"github.com/imdsdev/imds/internal/metrics"
	"github.com/imdsdev/imds/internal/neigh"
	"github.com/imdsdev/imds/internal/registry"
	"github.com/imdsdev/imds/internal/reload"
	"github.com/imdsdev/imds/internal/roles"
	"github.com/imdsdev/imds/internal/schedule"
	"github.com/imdsdev/imds/internal/store/etcd"
	"github.com/imdsdev/imds/internal/token"
	"github.com/imdsdev/imds/internal/userdata"
	"github.com/imdsdev/imds/internal/vmnet"
)

// Config is what `imds serve` takes from its flags and environment. Every
// field is optional: an empty one falls back to the config file, then to
// the default.
type Config struct {
	// ConfigPath is the YAML configuration file ("" for none).
	ConfigPath string
	// Listen are the metadata addresses; "127.0.0.1:0" picks a free port
	// (Daemon.Addrs tells which).
	Listen []string
	// DataDir holds the signing key, the store and VM network state.
	DataDir string
	// IMDSv2 ("optional" or "required") overrides every instance's mode.
	IMDSv2 string
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel, LogFormat string
	// AdminSocket is the Unix socket of the admin API.
	AdminSocket string
	// Clock drives credential rotation, token expiry and schedules;
	// clock.Real when nil.
	Clock clock.Clock
	// Stderr receives the log; io.Discard when nil.
	Stderr io.Writer
	// Version and Commit identify the build in imds_build_info.
	Version, Commit string
}

// Daemon is a running `imds serve`.
type Daemon struct {
	// Logger is the daemon's log; Flush writes what it has batched.
	Logger *slog.Logger
	// Registry answers for the instances; tests reach into it.
	Registry *registry.Registry
	// Metadata is the metadata server, Admin the admin API.
	Metadata *imds.Server
	Admin    *admin.Server
	// Metrics counts what the daemon does; MetricsEndpoint is the listener
	// of metrics.listen (nil without one).
	Metrics         *metrics.Metrics
	MetricsEndpoint *metrics.Endpoint
	// DataDir and ConfigPath are the directory and file in use.
	DataDir, ConfigPath string
	// Follower keeps the registry in step with store.etcd (nil with the
	// bolt store).
	Follower *etcd.Follower

	logw *fastlog.Writer
	// closers undo what Open did, run last first: one teardown order for a
	// failed start and for Close.
	closers   []func(ctx context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// onClose registers f to run at Close, before everything registered earlier.
func (d *Daemon) onClose(f func(ctx context.Context) error) { d.closers = append(d.closers, f) }

// background runs start with a context of its own and registers, for
// Close, the cancelling of that context and wait.
func (d *Daemon) background(ctx context.Context, start func(context.Context), wait func()) {
	ctx, cancel := context.WithCancel(ctx)
	start(ctx)
	d.onClose(func(context.Context) error { cancel(); wait(); return nil })
}

// opening is what the steps of Open share.
type opening struct {
	cfg    Config
	file   *config.File
	clk    clock.Clock
	ctx    context.Context // cancelled at Close
	derive ec2.DeriveOptions
	def    registry.Default
	vms    *vmnet.Network // nil without a vm_network
	// requests is the request record behind imds logs and imds report.
	requests *audit.Log
	// roles serve the role credentials (reloads replace them).
	roles *creds.Roles
	// views feed the admin API's views; reloads update their file.
	views *views
	// docker follows the Docker engine (nil without discovery.docker);
	// rolesFile is the file whose roles its labels may name.
	docker    *docker.Source
	rolesFile atomic.Pointer[config.File]
	// etcd is the cluster of store.etcd; nil with the bolt store.
	etcd *etcd.Store
	// presence keeps this host listed in store.etcd (nil with bolt).
	presence *etcd.Presence
}

// Open loads the configuration, opens the data directory and starts the
// metadata server and the admin API. It returns once both listen; on an
// error what was started is stopped again, by Close.
func Open(cfg Config) (_ *Daemon, err error) {
	o := &opening{cfg: cfg, clk: cfg.Clock, file: config.Default(),
		derive: ec2.DeriveOptions{Seed: machineSeed(), Launch: bootTime()}}
	if o.clk == nil {
		o.clk = clock.Real{}
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	if cfg.ConfigPath != "" {
		if o.file, err = config.Load(cfg.ConfigPath); err != nil {
			return nil, err
		}
	}
	logger, logw, err := NewLogger(stderr, firstNonEmpty(cfg.LogLevel, o.file.Log.Level), firstNonEmpty(cfg.LogFormat, o.file.Log.Format))
	if err != nil {
		return nil, err
	}
	d := &Daemon{Logger: logger, logw: logw, ConfigPath: cfg.ConfigPath}
	d.onClose(func(context.Context) error { return logw.Close() })
	defer func() {
		if err != nil {
			d.Close(context.Background())
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	o.ctx = ctx
	d.onClose(func(context.Context) error { cancel(); return nil })

	if err := d.openRegistry(o); err != nil {
		return nil, err
	}
	if err := d.shareStore(o); err != nil {
		return nil, err
	}
	srv, creds, err := d.newMetadata(o)
	if err != nil {
		return nil, err
	}
	o.roles = creds
	if o.vms != nil {
		if err := o.vms.Start(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.startDiscovery(o); err != nil {
		return nil, err
	}
	d.newMetrics(o, srv, creds)
	rot := roles.Rotator{Roles: creds, Instances: d.Registry, Logger: logger}
	v := &views{srv: srv, roles: creds, reg: d.Registry, clk: o.clk, dataDir: d.DataDir, cfgPath: cfg.ConfigPath, vmnet: o.file.VMNetwork, version: cfg.Version}
	v.file.Store(o.file)
	o.views = v
	v.store = d.storeStatus(o)
	if d.Admin, err = openAdmin(cfg, o.file, d.Registry, rot, o.requests, d.Metrics, logger, v.attach); err != nil {
		return nil, err
	}
	d.onClose(d.Admin.Close)
	if addr := o.file.Metrics.Listen; addr != "" {
		if d.MetricsEndpoint, err = d.Metrics.Listen(addr, logger); err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		d.onClose(d.MetricsEndpoint.Close)
	}
	if err := srv.Open(); err != nil {
		return nil, err
	}
	d.Metadata = srv
	d.onClose(srv.Close)
	v.opened(srv)
	d.listHosts(o)
	d.logStart(o)
	d.startWatchers(o)
	return d, nil
}

// openRegistry opens the data directory's store, the registry over it and
// the VM network, and loads the config's and the stored instances.
func (d *Daemon) openRegistry(o *opening) error {
	insts, def, err := reload.Instances(o.file, o.derive, o.cfg.IMDSv2)
	if err != nil {
		return err
	}
	insts, def = withoutImplicitDefault(o.file.Discovery.Docker != nil, o.file, insts, def, d.Logger)
	o.def = def
	d.DataDir = firstNonEmpty(o.cfg.DataDir, o.file.DataDir, DefaultDataDir())
	if err := checkDataDir(d.DataDir); err != nil {
		return err
	}
	store, err := d.openStore(o)
	if err != nil {
		return err
	}
	reg := registry.New(store, o.derive)
	reg.Logger, reg.Clock = d.Logger, o.clk
	d.Registry = reg
	d.onClose(func(context.Context) error { reg.Close(); return nil })
	reg.SetProxies(o.file.Identity.TrustedProxies, []byte(o.file.Identity.ProxySecret))
	// Read only when an instance is matched by MAC (match_mac, libvirt
	// VMs) and a requester's address is unknown: an instance that can only
	// be recognised by its MAC must be, whatever identity.neighbour_table says.
	reg.Neighbours = neigh.Table
	if o.file.VMNetwork != nil {
		// Hooked into the registry before instances are loaded, so that the
		// first host list covers them.
		vms, err := vmnet.Open(o.file.VMNetwork, d.DataDir, d.Logger)
		if err != nil {
			return err
		}
		o.vms = vms
		d.onClose(func(context.Context) error { vms.Close(); return nil })
		reg.Addresses, reg.OnChange = vms.Alloc(), vms.Changed
	}
	if err := reg.SetConfig(o.ctx, insts, def); err != nil {
		return fmt.Errorf("%s: %s", firstNonEmpty(o.cfg.ConfigPath, "configuration"), ec2.ErrorMessage(err))
	}
	// Events and faults issued before a restart (or on another host),
	// before the instances: read after them, they would make the registry
	// list and derive every stored instance a second time.
	if err := reg.LoadOverlays(o.ctx); err != nil {
		return fmt.Errorf("loading events and faults: %s", ec2.ErrorMessage(err))
	}
	// With store.etcd, shareStore loads the instances, derived from the
	// cluster's seed: loading them here too, with this machine's, would
	// cost as much again.
	if o.etcd == nil {
		if err := reg.Load(o.ctx); err != nil {
			return fmt.Errorf("loading instances from %s: %w", d.DataDir, err)
		}
	}
	return nil
}

// newMetadata starts the role credentials and returns the metadata server,
// ready to Open.
func (d *Daemon) newMetadata(o *opening) (*imds.Server, *creds.Roles, error) {
	file, clk := o.file, o.clk
	signer, err := identity.Open(filepath.Join(d.DataDir, "identity"), clk.Now, rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("data directory %s: %w", d.DataDir, err)
	}
	tokens, err := token.NewIssuer(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tokens.Now = clk.Now
	fakes := fake.New(rand.Reader)
	fakes.Now = clk.Now
	fakes.Lifetime, fakes.RotateAfter = file.Credentials.Lifetime, file.Credentials.RotateAfter
	roles.WarnReadableSecrets(d.Logger, o.cfg.ConfigPath, file)
	rs, err := roles.New(o.ctx, file, fakes, d.Logger, clk)
	if err != nil {
		return nil, nil, err
	}
	// Fetch every role's first credentials before serving, so that the first
	// request finds them; failures are logged and retried in the background.
	d.background(o.ctx, rs.Start, rs.Wait)

	srv := imds.NewServer()
	srv.Listen = firstNonEmptyList(o.cfg.Listen, file.Listen)
	srv.Limits = imds.Limits{MaxConns: file.Limits.MaxConnections, MaxConnsPerSource: file.Limits.MaxConnectionsPerSource,
		HeaderTimeout: file.Limits.HeaderTimeout, BodyTimeout: file.Limits.BodyTimeout, IdleTimeout: file.Limits.IdleTimeout}
	srv.Instances, srv.Credentials, srv.Identity, srv.Signer, srv.Tokens = d.Registry, rs, fakes, signer, tokens
	srv.Now, srv.Logger, srv.AllowedHosts = clk.Now, d.Logger, file.AllowedHosts
	// md_server's upload endpoint, for libvirt hooks written for it.
	reg := d.Registry
	srv.Upload = func(ctx context.Context, body io.Reader) error {
		dom, err := libvirt.Parse(body, libvirt.Options{})
		if err != nil {
			return err
		}
		return libvirt.Register(ctx, reg, dom)
	}
	if srv.UserData, err = userDataRenderer(file); err != nil {
		return nil, nil, err
	}
	srv.HopDistances = hopDistances(file)
	if file.Log.AccessLog != nil {
		srv.AccessLog = *file.Log.AccessLog
	}
	o.requests = audit.New(0)
	srv.Recorder = o.requests
	return srv, rs, nil
}

// userDataRenderer renders user-data from the file's templates; nil
// without user_data_templates.
func userDataRenderer(file *config.File) (func(*ec2.Instance) ([]byte, error), error) {
	t := file.Templates
	if t == nil {
		return nil, nil
	}
	r := &userdata.Renderer{Dir: t.Dir, Default: t.Default, SSHKeys: t.SSHKeys, Data: t.Data}
	if err := r.Check(); err != nil {
		return nil, err
	}
	if t.Default != "" && t.Default != "-" {
		b, err := os.ReadFile(t.Default)
		if err != nil {
			return nil, fmt.Errorf("user_data_templates.default: %w", err)
		}
		r.Default = string(b)
	}
	return r.Render, nil
}

func hopDistances(file *config.File) []imds.HopDistance {
	var out []imds.HopDistance
	for _, h := range file.HopDistances {
		out = append(out, imds.HopDistance(h))
	}
	return out
}

// newMetrics creates the daemon's metrics and makes the metadata server
// count its requests into them, besides the request record.
func (d *Daemon) newMetrics(o *opening, srv *imds.Server, rs *creds.Roles) {
	opt := metrics.Options{
		MaxInstances: o.file.Metrics.InstanceSeries, Version: o.cfg.Version, Commit: o.cfg.Commit,
		Now: o.clk.Now, Instances: d.Registry.CountByOrigin, Served: d.Registry.Has, Roles: rs.Status,
		Logger: d.Logger,
	}
	if o.vms != nil {
		opt.DNSMasq = o.vms.DNS().Restarts
	}
	opt.Store = func() (string, bool) { return "bolt", true }
	if f := d.Follower; f != nil {
		opt.Store = func() (string, bool) { return "etcd", f.Online() }
	}
	d.Metrics = metrics.New(opt)
	srv.Recorder = recorders{srv.Recorder, d.Metrics}
}

// recorders hands every request record to each of them, in order.
type recorders []interface{ Record(ec2.RequestRecord) }

func (rs recorders) Record(rec ec2.RequestRecord) {
	for _, r := range rs {
		r.Record(rec)
	}
}

// logStart says where the daemon listens.
func (d *Daemon) logStart(o *opening) {
	var addrs []string
	for _, a := range d.Metadata.Addrs() {
		addrs = append(addrs, a.String())
	}
	n := d.Registry.Len()
	d.Logger.Info("admin API listening", "socket", d.Admin.SocketPath, "tcp", d.Admin.TCPAddr)
	d.Logger.Info("serving instance metadata",
		"listen", strings.Join(addrs, ","), "instances", n, "default", o.def.Name,
		"imdsv2", firstNonEmpty(o.cfg.IMDSv2, "per instance"), "data_dir", d.DataDir)
	if n >= 10000 {
		// Loading leaves free heap about as large as what it kept (decoded
		// records, derivation): at 100,000 instances, 200 MB of RSS that the
		// scavenger would return only slowly. Handed back now, off the
		// start-up path.
		go debug.FreeOSMemory()
	}
}

// startWatchers starts the schedules of the config and, with a config
// file, the watcher that reloads it.
func (d *Daemon) startWatchers(o *opening) {
	sched := &schedule.Runner{Clock: o.clk, Trigger: d.Registry.TriggerEvent, Logger: d.Logger}
	schedules := o.file.Schedules()
	d.background(o.ctx, func(ctx context.Context) { sched.Start(ctx, schedules) }, sched.Wait)
	if o.cfg.ConfigPath == "" {
		return
	}
	prev := o.file
	w := &reload.Watcher{Path: o.cfg.ConfigPath, Clock: o.clk, Logger: d.Logger,
		Apply: func(ctx context.Context, next *config.File) (reload.Outcome, error) {
			out, err := d.reload(ctx, o, prev, next, sched)
			if err == nil {
				prev = next
			}
			return out, err
		}}
	d.background(o.ctx, w.Start, w.Wait)
}

// reload puts in force what a reloaded file changes: instances, roles,
// identity, hop distances, allowed hosts, templates and schedules. All of
// it is checked first; a file with one bad part changes nothing.
// Listeners, directories, logging, limits and the VM network take a
// restart: the outcome names those that changed.
func (d *Daemon) reload(ctx context.Context, o *opening, prev, next *config.File, sched *schedule.Runner) (reload.Outcome, error) {
	insts, def, err := reload.Instances(next, o.derive, o.cfg.IMDSv2)
	if err != nil {
		return reload.Outcome{}, err
	}
	// Discovery itself takes a restart: what runs is the start-up file's.
	insts, def = withoutImplicitDefault(o.file.Discovery.Docker != nil, next, insts, def, d.Logger)
	userData, err := userDataRenderer(next)
	if err != nil {
		return reload.Outcome{}, err
	}
	plan, err := roles.Reload(ctx, o.roles, prev, next, d.Logger, o.clk)
	if err != nil {
		return reload.Outcome{}, err
	}
	// The roles' new credentials are fetched before the instances that use
	// them are served; if the registry refuses the instances, the roles
	// stay as they were.
	if err := plan.Apply(func() error { return d.Registry.SetConfig(ctx, insts, def) }); err != nil {
		return reload.Outcome{}, err
	}
	d.Registry.SetProxies(next.Identity.TrustedProxies, []byte(next.Identity.ProxySecret))
	d.Metadata.Reconfigure(imds.Settings{AllowedHosts: next.AllowedHosts, HopDistances: hopDistances(next), UserData: userData})
	sched.Update(next.Schedules())
	o.views.file.Store(next)
	d.discoveryRoles(o, next)
	changed, restart := reload.Diff(prev, next)
	return reload.Outcome{Instances: len(insts), Changed: changed, NeedRestart: restart}, nil
}

// Close stops the daemon, waiting for requests in flight until ctx is done,
// then flushes the log. Closing twice is harmless.
func (d *Daemon) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		var errs []error
		for i := len(d.closers) - 1; i >= 0; i-- {
			errs = append(errs, d.closers[i](ctx))
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Addrs are the addresses the metadata server listens on.
func (d *Daemon) Addrs() []net.Addr { return d.Metadata.Addrs() }

// URL is the base URL of the first metadata address.
func (d *Daemon) URL() string { return d.Metadata.URL() }

// Flush writes the log lines batched so far.
func (d *Daemon) Flush() error { return d.logw.Flush() }

// logFlushInterval bounds how long a log line may wait in the batch.
const logFlushInterval = 100 * time.Millisecond

// NewLogger returns the daemon's logger and the batching writer under it,
// which the caller must Close to flush.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, *fastlog.Writer, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("log level %q: must be debug, info, warn or error", level)
	}
	if format != "text" && format != "json" {
		return nil, nil, fmt.Errorf("log format %q: must be text or json", format)
	}
	bw := fastlog.NewWriter(w, logFlushInterval)
	if format == "json" {
		return slog.New(slog.NewJSONHandler(bw, &slog.HandlerOptions{Level: lv})), bw, nil
	}
	return slog.New(fastlog.NewHandler(bw, lv)), bw, nil
}

// openAdmin opens the admin API on its Unix socket and, when the config
// asks, on TCP with the bearer token read from admin.token_file.
// attach sets the remaining fields (views, dashboard) before it opens.
func openAdmin(cfg Config, file *config.File, reg *registry.Registry, rot ec2.CredentialRotator, requests ec2.RequestLog, m *metrics.Metrics, logger *slog.Logger, attach func(*admin.Server)) (*admin.Server, error) {
	a := admin.NewServer()
	a.Service, a.Credentials, a.Events, a.Faults, a.Requests, a.Logger = reg, rot, reg, reg, requests, logger
	a.Metrics = m.Handler()
	a.SocketPath = firstNonEmpty(cfg.AdminSocket, file.Admin.Socket, admin.DefaultSocket())
	a.SocketGroup = file.Admin.SocketGroup
	if file.Admin.Listen != "" {
		if file.Admin.TokenFile == "" {
			return nil, fmt.Errorf("%s: admin.listen needs admin.token_file (a file holding the bearer token)", cfg.ConfigPath)
		}
		token, err := admin.ReadTokenFile(file.Admin.TokenFile, true)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		a.TCPAddr, a.Token = file.Admin.Listen, token
	}
	attach(a)
	if err := a.Open(); err != nil {
		return nil, err
	}
	return a, nil
}

// machineSeed identifies this machine so that the default instance keeps its
// IDs and addresses across restarts.
func machineSeed() []byte {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return []byte(strings.TrimSpace(string(b)))
		}
	}
	h, _ := os.Hostname()
	return []byte("host:" + h)
}

// bootTime is the instance's launch time: stable across restarts of imds,
// new after a reboot, as an instance's pendingTime would be.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				if sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					return time.Unix(sec, 0).UTC()
				}
			}
		}
	}
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
}

// DefaultDataDir is the data directory without --data-dir or data_dir:
// /var/lib/imds as root, else $XDG_DATA_HOME/imds.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/imds"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "imds")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "imds")
	}
	return filepath.Join(os.TempDir(), "imds-"+strconv.Itoa(os.Getuid()))
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstNonEmptyList(v ...[]string) []string {
	for _, s := range v {
		if len(s) > 0 {
			return s
		}
	}
	return nil
}
