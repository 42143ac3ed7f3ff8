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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/audit"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds/fake"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/fastlog"
	"github.com/imdsdev/imds/internal/identity"
	"github.com/imdsdev/imds/internal/imds"
	"github.com/imdsdev/imds/internal/libvirt"
	"github.com/imdsdev/imds/internal/neigh"
	"github.com/imdsdev/imds/internal/registry"
	"github.com/imdsdev/imds/internal/reload"
	"github.com/imdsdev/imds/internal/roles"
	"github.com/imdsdev/imds/internal/schedule"
	"github.com/imdsdev/imds/internal/store/bolt"
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
	// DataDir and ConfigPath are the directory and file in use.
	DataDir, ConfigPath string

	logw *fastlog.Writer
	// closers undo what Open did, run last first: one teardown order for a
	// failed start and for Close.
	closers   []func(ctx context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// onClose registers f to run at Close, before everything registered earlier.
func (d *Daemon) onClose(f func(ctx context.Context) error) { d.closers = append(d.closers, f) }

// Open loads the configuration, opens the data directory and starts the
// metadata server and the admin API. It returns once both listen; on an
// error what was started is stopped again.
func Open(cfg Config) (_ *Daemon, err error) {
	clk := cfg.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	file := config.Default()
	if cfg.ConfigPath != "" {
		if file, err = config.Load(cfg.ConfigPath); err != nil {
			return nil, err
		}
	}
	logger, logw, err := NewLogger(stderr, firstNonEmpty(cfg.LogLevel, file.Log.Level), firstNonEmpty(cfg.LogFormat, file.Log.Format))
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
	d.onClose(func(context.Context) error { cancel(); return nil })

	derive := ec2.DeriveOptions{Seed: machineSeed(), Launch: bootTime()}
	insts, def, err := reload.Instances(file, derive, cfg.IMDSv2)
	if err != nil {
		return nil, err
	}

	d.DataDir = firstNonEmpty(cfg.DataDir, file.DataDir, DefaultDataDir())
	signer, err := identity.Open(filepath.Join(d.DataDir, "identity"), clk.Now, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", d.DataDir, err)
	}
	db, err := bolt.Open(filepath.Join(d.DataDir, "imds.db"))
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", d.DataDir, err)
	}
	d.onClose(func(context.Context) error { return db.Close() })
	reg := registry.New(db.Instances(), derive)
	reg.Logger, reg.Clock = logger, clk
	d.Registry = reg
	d.onClose(func(context.Context) error { reg.Close(); return nil })
	reg.TrustedProxies, reg.ProxySecret = file.Identity.TrustedProxies, []byte(file.Identity.ProxySecret)
	// Read only when an instance is matched by MAC (match_mac, libvirt
	// VMs) and a requester's address is unknown: an instance that can only
	// be recognised by its MAC must be, whatever identity.neighbour_table says.
	reg.Neighbours = neigh.Table
	var vms *vmnet.Network
	if file.VMNetwork != nil {
		// Hooked into the registry before instances are loaded, so that the
		// first host list covers them.
		if vms, err = vmnet.Open(file.VMNetwork, d.DataDir, logger); err != nil {
			return nil, err
		}
		d.onClose(func(context.Context) error { vms.Close(); return nil })
		reg.Addresses, reg.OnChange = vms.Alloc(), vms.Changed
	}
	if err := reg.SetConfig(ctx, insts, def); err != nil {
		return nil, fmt.Errorf("%s: %s", firstNonEmpty(cfg.ConfigPath, "configuration"), ec2.ErrorMessage(err))
	}
	if err := reg.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading instances from %s: %w", d.DataDir, err)
	}
	tokens, err := token.NewIssuer(rand.Reader)
	if err != nil {
		return nil, err
	}
	tokens.Now = clk.Now
	fakes := fake.New(rand.Reader)
	fakes.Now = clk.Now
	fakes.Lifetime, fakes.RotateAfter = file.Credentials.Lifetime, file.Credentials.RotateAfter
	roles.WarnReadableSecrets(logger, cfg.ConfigPath, file)
	creds, err := roles.New(ctx, file, fakes, logger, clk)
	if err != nil {
		return nil, err
	}
	// Fetch every role's first credentials before serving, so that the first
	// request finds them; failures are logged and retried in the background.
	rolesCtx, stopRoles := context.WithCancel(ctx)
	creds.Start(rolesCtx)
	d.onClose(func(context.Context) error { stopRoles(); creds.Wait(); return nil })

	srv := imds.NewServer()
	srv.Listen = firstNonEmptyList(cfg.Listen, file.Listen)
	srv.Instances = reg
	srv.Credentials = creds
	srv.Identity = fakes
	srv.Signer = signer
	srv.Tokens = tokens
	srv.Now = clk.Now
	srv.Logger = logger
	srv.AllowedHosts = file.AllowedHosts
	// md_server's upload endpoint, for libvirt hooks written for it.
	srv.Upload = func(ctx context.Context, body io.Reader) error {
		dom, err := libvirt.Parse(body, libvirt.Options{})
		if err != nil {
			return err
		}
		return libvirt.Register(ctx, reg, dom)
	}
	if t := file.Templates; t != nil {
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
		srv.UserData = r.Render
	}
	for _, h := range file.HopDistances {
		srv.HopDistances = append(srv.HopDistances, imds.HopDistance(h))
	}
	if file.Log.AccessLog != nil {
		srv.AccessLog = *file.Log.AccessLog
	}
	// The request record behind imds logs and imds report.
	requests := audit.New(0)
	srv.Recorder = requests
	if vms != nil {
		if err := vms.Start(ctx); err != nil {
			return nil, err
		}
	}
	adm, err := openAdmin(cfg, file, reg, roles.Rotator{Roles: creds, Instances: reg, Logger: logger}, requests, logger)
	if err != nil {
		return nil, err
	}
	d.Admin = adm
	d.onClose(adm.Close)
	if err := srv.Open(); err != nil {
		return nil, err
	}
	d.Metadata = srv
	d.onClose(srv.Close)

	var addrs []string
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}
	list, _ := reg.ListInstances(ctx)
	logger.Info("admin API listening", "socket", adm.SocketPath, "tcp", adm.TCPAddr)
	logger.Info("serving instance metadata",
		"listen", strings.Join(addrs, ","), "instances", len(list), "default", def.Name,
		"imdsv2", firstNonEmpty(cfg.IMDSv2, "per instance"), "data_dir", d.DataDir)

	if cfg.ConfigPath != "" {
		// Other settings than the instances (listen addresses, roles,
		// identity) take a restart.
		w := &reload.Watcher{Path: cfg.ConfigPath, Clock: clk, Logger: logger,
			Apply: func(ctx context.Context, file *config.File) (int, error) {
				insts, def, err := reload.Instances(file, derive, cfg.IMDSv2)
				if err != nil {
					return 0, err
				}
				return len(insts), reg.SetConfig(ctx, insts, def)
			}}
		wctx, stop := context.WithCancel(ctx)
		w.Start(wctx)
		d.onClose(func(context.Context) error { stop(); w.Wait(); return nil })
	}
	sched := &schedule.Runner{Clock: clk, Trigger: reg.TriggerEvent, Logger: logger}
	sctx, stopSched := context.WithCancel(ctx)
	sched.Start(sctx, file.Schedules())
	d.onClose(func(context.Context) error { stopSched(); sched.Wait(); return nil })
	return d, nil
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
func openAdmin(cfg Config, file *config.File, reg *registry.Registry, rot ec2.CredentialRotator, requests ec2.RequestLog, logger *slog.Logger) (*admin.Server, error) {
	a := admin.NewServer()
	a.Service, a.Credentials, a.Events, a.Faults, a.Requests, a.Logger = reg, rot, reg, reg, requests, logger
	a.SocketPath = firstNonEmpty(cfg.AdminSocket, file.Admin.Socket, admin.DefaultSocket())
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
