package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/audit"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds"
	"github.com/imdsdev/imds/internal/creds/fake"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/fastlog"
	"github.com/imdsdev/imds/internal/identity"
	"github.com/imdsdev/imds/internal/imds"
	"github.com/imdsdev/imds/internal/libvirt"
	"github.com/imdsdev/imds/internal/neigh"
	"github.com/imdsdev/imds/internal/registry"
	"github.com/imdsdev/imds/internal/sdnotify"
	"github.com/imdsdev/imds/internal/store/bolt"
	"github.com/imdsdev/imds/internal/token"
	"github.com/imdsdev/imds/internal/userdata"
)

// serveOptions are the flags of `imds serve`. Precedence: flag, then the
// IMDS_* environment variable, then the config file, then the default.
type serveOptions struct {
	configPath string
	listen     []string
	dataDir    string
	imdsv2     string
	logLevel   string
	logFormat  string
	adminSock  string

	// clock drives credential rotation and token expiry; tests set a fake.
	clock clock.Clock
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve instance metadata (127.0.0.1:1338 and one default instance when run without configuration)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			d, err := openDaemon(o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			notifySystemd(d.log, sdnotify.Ready) // every listener is open
			<-cmd.Context().Done()
			d.log.Info("shutting down")
			notifySystemd(d.log, sdnotify.Stopping)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return d.Close(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configPath, "config", "", "YAML configuration `file` (env IMDS_CONFIG)")
	f.StringArrayVar(&o.listen, "listen", nil, "`address` to serve metadata on, repeatable (default 127.0.0.1:1338; env IMDS_LISTEN, comma-separated)")
	f.StringVar(&o.dataDir, "data-dir", "", "`directory` for the signing key and state (default /var/lib/imds as root, else $XDG_DATA_HOME/imds; env IMDS_DATA_DIR)")
	f.StringVar(&o.imdsv2, "imdsv2", "", "IMDSv2 `mode` of the instance: optional or required (env IMDS_IMDSV2)")
	f.StringVar(&o.logLevel, "log-level", "", "log `level`: debug, info, warn or error (env IMDS_LOG_LEVEL)")
	f.StringVar(&o.logFormat, "log-format", "", "log `format`: text or json (env IMDS_LOG_FORMAT)")
	f.StringVar(&o.adminSock, "admin-socket", "", "Unix `socket` of the admin API (default "+defaultAdminSocket()+"; env IMDS_ADMIN_SOCKET)")
	return cmd
}

// applyEnv sets every flag the user did not give from IMDS_<FLAG>, so that
// containers and systemd units can configure imds without a command line.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		name := "IMDS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if f.Changed || !ok {
			return
		}
		vals := []string{v}
		if f.Value.Type() == "stringArray" {
			vals = strings.Split(v, ",")
		}
		for _, v := range vals {
			if err := fs.Set(f.Name, strings.TrimSpace(v)); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// daemon is a running `imds serve`: everything it opened, to close in order.
type daemon struct {
	log        *slog.Logger
	logw       *fastlog.Writer
	registry   *registry.Registry
	db         *bolt.DB
	metadata   *imds.Server
	admin      *admin.Server
	vms        *vmNetwork
	configPath string
	imdsv2     string
	derive     ec2.DeriveOptions
	configDone chan struct{}
	roles      *creds.Roles
	dataDir    string
	stop       context.CancelFunc // stops the refreshers

	closeOnce sync.Once
	closeErr  error
}

// openDaemon loads configuration, opens the data directory and starts the
// metadata server. It returns only when the server is listening.
func openDaemon(o serveOptions, stderr io.Writer) (*daemon, error) {
	clk := o.clock
	if clk == nil {
		clk = clock.Real{}
	}
	file := config.Default()
	if o.configPath != "" {
		f, err := config.Load(o.configPath)
		if err != nil {
			return nil, err
		}
		file = f
	}
	logger, logw, err := newLogger(stderr, firstNonEmpty(o.logLevel, file.Log.Level), firstNonEmpty(o.logFormat, file.Log.Format))
	if err != nil {
		return nil, err
	}
	// undo holds what to close, in reverse, if start-up fails half-way.
	undo := []func(){func() { logw.Close() }}
	ok := false
	defer func() {
		if !ok {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	derive := ec2.DeriveOptions{Seed: machineSeed(), Launch: bootTime()}
	insts, defName, err := configInstances(file, derive, o.imdsv2)
	if err != nil {
		return nil, err
	}

	dataDir := firstNonEmpty(o.dataDir, file.DataDir, defaultDataDir())
	signer, err := identity.Open(filepath.Join(dataDir, "identity"), time.Now, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dataDir, err)
	}
	db, err := bolt.Open(filepath.Join(dataDir, "imds.db"))
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dataDir, err)
	}
	undo = append(undo, func() { db.Close() })
	reg := registry.New(db.Instances(), derive)
	reg.Logger, reg.Now, reg.Clock = logger, clk.Now, clk
	undo = append(undo, reg.Close)
	reg.TrustedProxies, reg.ProxySecret = file.Identity.TrustedProxies, []byte(file.Identity.ProxySecret)
	if file.Identity.NeighbourTable {
		reg.Neighbours = neigh.Table
	}
	vms, err := openVMNetwork(file.VMNetwork, dataDir, reg, logger)
	if err != nil {
		return nil, err
	}
	if vms != nil {
		undo = append(undo, vms.close)
	}
	if err := reg.SetConfig(context.Background(), insts, defName); err != nil {
		return nil, fmt.Errorf("%s: %s", firstNonEmpty(o.configPath, "configuration"), ec2.ErrorMessage(err))
	}
	if err := reg.Load(context.Background()); err != nil {
		return nil, fmt.Errorf("loading instances from %s: %w", dataDir, err)
	}
	tokens, err := token.NewIssuer(rand.Reader)
	if err != nil {
		return nil, err
	}
	tokens.Now = clk.Now
	fakes := fake.New(rand.Reader)
	fakes.Now = clk.Now
	fakes.Lifetime, fakes.RotateAfter = file.Credentials.Lifetime, file.Credentials.RotateAfter
	warnReadableSecrets(logger, o.configPath, file)
	ctx, cancel := context.WithCancel(context.Background())
	undo = append(undo, cancel)
	roles, err := newRoles(ctx, file, fakes, logger, clk)
	if err != nil {
		return nil, err
	}
	// Fetch every role's first credentials before serving, so that the first
	// request finds them; failures are logged and retried in the background.
	roles.Start(ctx)
	undo = append(undo, func() { cancel(); roles.Wait() })

	srv := imds.NewServer()
	srv.Listen = firstNonEmptyList(o.listen, file.Listen)
	srv.Instances = reg
	srv.Credentials = roles
	srv.Identity = fakes
	srv.Signer = signer
	srv.Tokens = tokens
	srv.Now = clk.Now
	srv.Logger = logger
	srv.AllowedHosts = file.AllowedHosts
	// md_server's upload endpoint, for libvirt hooks written for it.
	srv.Upload = func(ctx context.Context, body io.Reader) error {
		d, err := libvirt.Parse(body, libvirt.Options{})
		if err != nil {
			return err
		}
		return registerDomain(ctx, reg, d)
	}
	if t := file.Templates; t != nil {
		r := &userdata.Renderer{Dir: t.Dir, Default: t.Default, SSHKeys: t.SSHKeys, Data: t.Data}
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
		if err := vms.start(ctx); err != nil {
			return nil, err
		}
	}
	adminSrv, err := newAdminServer(o, file, reg, rotator{roles: roles, registry: reg, log: logger}, requests, logger)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { adminSrv.Close(context.Background()) })
	if err := srv.Open(); err != nil {
		return nil, err
	}
	undo = append(undo, func() { srv.Close(context.Background()) })
	var addrs []string
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}
	list, _ := reg.ListInstances(context.Background())
	logger.Info("admin API listening", "socket", adminSrv.SocketPath, "tcp", adminSrv.TCPAddr)
	logger.Info("serving instance metadata",
		"listen", strings.Join(addrs, ","), "instances", len(list), "default", defName,
		"imdsv2", firstNonEmpty(o.imdsv2, "per instance"), "data_dir", dataDir)
	d := &daemon{log: logger, logw: logw, registry: reg, db: db, metadata: srv, admin: adminSrv, roles: roles, stop: cancel, vms: vms,
		dataDir: dataDir, configPath: o.configPath, imdsv2: o.imdsv2, derive: derive}
	d.watchConfig(ctx)
	d.startSchedules(ctx, file, clk)
	ok = true
	return d, nil
}

// Close stops the daemon, waiting for requests in flight until ctx is done,
// then flushes the log. Closing twice is harmless.
func (d *daemon) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		err := errors.Join(d.metadata.Close(ctx), d.admin.Close(ctx))
		d.stop()
		d.registry.Close()
		if d.vms != nil {
			d.vms.close()
		}
		d.roles.Wait()
		<-d.configDone
		d.closeErr = errors.Join(err, d.db.Close(), d.logw.Close())
	})
	return d.closeErr
}

// logFlushInterval bounds how long a log line may wait in the batch.
const logFlushInterval = 100 * time.Millisecond

// newLogger returns the daemon's logger and the batching writer under it,
// which the caller must Close to flush.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *fastlog.Writer, error) {
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

func defaultDataDir() string {
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

// newAdminServer opens the admin API on its Unix socket and, when the config
// asks, on TCP with the bearer token read from admin.token_file.
func newAdminServer(o serveOptions, file *config.File, reg *registry.Registry, rot ec2.CredentialRotator, requests ec2.RequestLog, logger *slog.Logger) (*admin.Server, error) {
	a := admin.NewServer()
	a.Service, a.Credentials, a.Events, a.Faults, a.Requests, a.Logger = reg, rot, reg, reg, requests, logger
	a.SocketPath = firstNonEmpty(o.adminSock, file.Admin.Socket, defaultAdminSocket())
	a.SocketGroup = file.Admin.SocketGroup
	if file.Admin.Listen != "" {
		if file.Admin.TokenFile == "" {
			return nil, fmt.Errorf("%s: admin.listen needs admin.token_file (a file holding the bearer token)", o.configPath)
		}
		b, err := os.ReadFile(file.Admin.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		if st, err := os.Stat(file.Admin.TokenFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("admin.token_file %s: readable by other users (mode %04o); chmod 600 it", file.Admin.TokenFile, st.Mode().Perm())
		}
		a.TCPAddr, a.Token = file.Admin.Listen, strings.TrimSpace(string(b))
	}
	if err := a.Open(); err != nil {
		return nil, err
	}
	return a, nil
}
