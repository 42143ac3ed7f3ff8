package dnsmasq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imdsdev/imds/internal/atomicfile"
)

// Timing of the supervision.
const (
	// readyTimeout bounds how long Start waits for dnsmasq's "started" line.
	readyTimeout = 10 * time.Second
	// stopGrace is the time between SIGTERM and SIGKILL.
	stopGrace = 5 * time.Second
	// Restart backoff: doubles from minBackoff up to maxBackoff; reset once a
	// process stayed up for stableAfter.
	minBackoff  = 200 * time.Millisecond
	maxBackoff  = 30 * time.Second
	stableAfter = 30 * time.Second
)

// Server is a supervised dnsmasq. It is safe for concurrent use.
type Server struct {
	cfg    Config
	cfgErr error
	logger *slog.Logger

	mu      sync.Mutex
	hosts   []Host // normalised, sorted
	proc    *process
	started bool
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	restart chan chan error // a restart request and where to answer it

	crashes, restarts atomic.Int64 // see Restarts
}

// Restarts tells how many times dnsmasq was started again: after it
// exited on its own (crashes), and on request, when a host was removed.
func (s *Server) Restarts() (crashes, requested int64) {
	return s.crashes.Load(), s.restarts.Load()
}

type process struct {
	cmd   *exec.Cmd
	exit  chan struct{} // closed after Wait returned
	err   error         // Wait's result, valid after exit is closed
	ready chan struct{} // closed when dnsmasq logged that it started
	start time.Time
	logs  *logSink
}

// New returns a Server for cfg; nothing happens until Start. A nil logger
// discards dnsmasq's log.
func New(cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Server{
		cfg:     cfg,
		cfgErr:  cfg.validate(),
		logger:  logger.With("component", "dnsmasq"),
		restart: make(chan chan error),
	}
}

// ConfigFile is the path of the generated configuration file. A dnsmasq run
// by systemd can use it directly:
//
//	dnsmasq --keep-in-foreground --conf-file=<ConfigFile()>
//
// (then send it SIGHUP after SetHosts, e.g. with ExecReload=kill -HUP $MAINPID).
func (s *Server) ConfigFile() string { return s.cfg.confPath() }

// WriteConfig writes the configuration and the (current) hosts files
// without starting anything, for a dnsmasq run by someone else.
func (s *Server) WriteConfig() error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeAllLocked()
}

// Args returns dnsmasq's command line (without the binary).
func (s *Server) Args() []string {
	return []string{"--keep-in-foreground", "--conf-file=" + s.cfg.confPath(), "--log-facility=-"}
}

func (s *Server) argv() []string {
	args := s.Args()
	switch {
	case s.cfg.Command != nil:
		return s.cfg.Command(s.cfg.Binary, args)
	case s.cfg.Netns != "":
		return append([]string{"ip", "netns", "exec", s.cfg.Netns, s.cfg.Binary}, args...)
	default:
		return append([]string{s.cfg.Binary}, args...)
	}
}

// PID is the process id of the running dnsmasq, 0 if none.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

func (p *process) exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

func (p *process) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// Start writes the configuration, starts dnsmasq and supervises it until
// Stop is called or ctx is done: if dnsmasq exits unexpectedly it is
// restarted with exponential backoff. Start returns once dnsmasq reported
// that it started, or an error (with its last log lines) if it exited first.
func (s *Server) Start(ctx context.Context) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("dnsmasq: already started")
	}
	if err := s.writeAllLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.killStaleLocked()
	p, err := s.spawnLocked()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()

	if err := p.waitReady(ctx); err != nil {
		terminate(p, s.logger)
		return err
	}
	s.mu.Lock()
	s.started = true
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	stop, done := s.stop, s.done
	s.mu.Unlock()
	go s.supervise(ctx, p, stop, done)
	return nil
}

func (p *process) waitReady(ctx context.Context) error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.exit:
		return fmt.Errorf("dnsmasq exited during startup (%v): %s", p.err, p.logs.tail())
	case <-t.C:
		// Some builds may not log the banner; it is running, assume ready.
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) spawnLocked() (*process, error) {
	argv := s.argv()
	cmd := exec.Command(argv[0], argv[1:]...)
	// dnsmasq must not outlive imds, even when imds is killed with SIGKILL.
	cmd.SysProcAttr = childAttr()
	p := &process{cmd: cmd, exit: make(chan struct{}), ready: make(chan struct{}), start: time.Now()}
	var once sync.Once
	p.logs = &logSink{logger: s.logger, onLine: func(line string) {
		if strings.Contains(line, "started, version") {
			once.Do(func() { close(p.ready) })
		}
	}}
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	cmd.WaitDelay = time.Second // children (TCP DNS) may hold stderr open
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dnsmasq: starting %s: %w", argv[0], err)
	}
	s.logger.Info("dnsmasq started", "pid", cmd.Process.Pid, "argv", argv)
	go func() {
		p.err = cmd.Wait()
		p.logs.flush()
		close(p.exit)
	}()
	s.proc = p
	if err := os.WriteFile(s.cfg.pidPath(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		s.logger.Warn("writing pid file", "err", err)
	}
	return p, nil
}

// killStaleLocked stops a dnsmasq left behind by a previous run of ours
// (identified by the pid file and our config file on its command line).
func (s *Server) killStaleLocked() {
	data, err := os.ReadFile(s.cfg.pidPath())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("--conf-file="+s.cfg.confPath()+"\x00")) {
		return
	}
	s.logger.Warn("stopping stale dnsmasq from a previous run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func (s *Server) supervise(ctx context.Context, p *process, stop, done chan struct{}) {
	defer close(done)
	backoff := minBackoff
	for {
		select {
		case <-ctx.Done():
			terminate(p, s.logger)
			return
		case <-stop:
			terminate(p, s.logger)
			return
		case reply := <-s.restart:
			s.restarts.Add(1)
			terminate(p, s.logger)
			s.mu.Lock()
			np, err := s.spawnLocked()
			s.mu.Unlock()
			if err == nil {
				err = np.waitReady(ctx)
				p = np
			}
			reply <- err
			if err != nil && np == nil {
				// Could not even exec: fall through to the backoff path
				// by waiting on an already-exited placeholder.
				p = exitedProcess()
			}
		case <-p.exit:
			s.crashes.Add(1)
			up := time.Since(p.start)
			if up >= stableAfter {
				backoff = minBackoff
			}
			s.logger.Error("dnsmasq exited unexpectedly; restarting", "pid", p.cmd.Process.Pid,
				"err", p.err, "uptime", up.Round(time.Millisecond), "backoff", backoff, "log", p.logs.tail())
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, maxBackoff)
			s.mu.Lock()
			np, err := s.spawnLocked()
			s.mu.Unlock()
			if err != nil {
				s.logger.Error("restarting dnsmasq", "err", err)
				p = exitedProcess()
				continue
			}
			p = np
		}
	}
}

func exitedProcess() *process {
	p := &process{cmd: &exec.Cmd{Process: &os.Process{Pid: 0}}, exit: make(chan struct{}), ready: make(chan struct{}), start: time.Now(), logs: &logSink{}}
	p.err = errors.New("not started")
	close(p.exit)
	return p
}

// terminate sends SIGTERM to p (only to its own PID), waits stopGrace, then
// SIGKILLs it.
func terminate(p *process, logger *slog.Logger) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.exit:
	case <-t.C:
		logger.Warn("dnsmasq did not stop after SIGTERM; killing", "pid", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.exit
	}
}

// Stop stops supervision and dnsmasq (SIGTERM, then SIGKILL after a grace
// period). It is idempotent.
func (s *Server) Stop() error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	close(s.stop)
	done := s.done
	s.mu.Unlock()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc = nil
	if err := os.Remove(s.cfg.pidPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// SetHosts replaces the set of hosts: it rewrites the dhcp-hostsfile and the
// addn-hosts file atomically and makes dnsmasq re-read them with SIGHUP.
//
// dnsmasq keeps the DHCP leases it handed out, and a lease keeps its name in
// DNS even after its dhcp-host line is gone. So when a host is removed (or
// its address or name changes), SIGHUP would not make the old name
// disappear; dnsmasq is restarted instead (leases are not persisted,
// leasefile-ro, and every reservation is static, so clients just renew).
func (s *Server) SetHosts(hosts []Host) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	norm, err := normalizeHosts(s.cfg, hosts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.hosts
	s.hosts = norm
	if err := s.writeHostsLocked(); err != nil {
		s.hosts = old
		s.mu.Unlock()
		return err
	}
	p := s.proc
	running := s.started && !s.stopped && p != nil && !p.exited()
	s.mu.Unlock()
	if !running {
		return nil // read at the next (re)start
	}
	if removesOrChanges(old, norm) {
		reply := make(chan error, 1)
		select {
		case s.restart <- reply:
			if err := <-reply; err != nil {
				return fmt.Errorf("dnsmasq: restarting after host removal: %w", err)
			}
		case <-s.done:
		}
		return nil
	}
	if !p.isReady() {
		// Signal handlers may not be installed yet (SIGHUP would kill it);
		// it reads the files as it starts.
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("dnsmasq: SIGHUP: %w", err)
	}
	return nil
}

// removesOrChanges reports whether some host of old is missing from new or
// differs there.
func removesOrChanges(old, new []Host) bool {
	for _, o := range old {
		if !slices.Contains(new, o) {
			return true
		}
	}
	return false
}

// Hosts returns the current hosts, sorted by address.
func (s *Server) Hosts() []Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hosts)
}

func (s *Server) writeAllLocked() error {
	if err := s.writeFile(s.cfg.confPath(), render(s.cfg)); err != nil {
		return err
	}
	return s.writeHostsLocked()
}

func (s *Server) ensureDir() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	if err := os.Chmod(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	return s.chown(s.cfg.Dir)
}

func (s *Server) writeHostsLocked() error {
	if err := s.writeFile(s.cfg.dhcpHostsPath(), renderDHCPHosts(s.hosts)); err != nil {
		return err
	}
	return s.writeFile(s.cfg.hostsPath(), renderHosts(s.cfg, s.hosts))
}

func (s *Server) writeFile(path string, data []byte) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("dnsmasq: writing %s: %w", path, err)
	}
	return s.chown(path)
}

// chown gives path to cfg.User when that is not root, so that dnsmasq can
// read the files after dropping privileges.
func (s *Server) chown(path string) error {
	if s.cfg.User == "root" || os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(s.cfg.User)
	if err != nil {
		return fmt.Errorf("dnsmasq: user %q: %w", s.cfg.User, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	return nil
}

// logSink turns dnsmasq's output into log records, one per line, and keeps
// the last lines for error messages.
type logSink struct {
	logger *slog.Logger
	onLine func(string)

	mu   sync.Mutex
	buf  []byte
	last []string
}

func (l *logSink) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.lineLocked(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(b), nil
}

func (l *logSink) lineLocked(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	if l.logger != nil {
		l.logger.Info(line)
	}
	l.last = append(l.last, line)
	if len(l.last) > 10 {
		l.last = l.last[len(l.last)-10:]
	}
	if l.onLine != nil {
		l.onLine(line)
	}
}

func (l *logSink) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.lineLocked(string(l.buf))
		l.buf = nil
	}
}

func (l *logSink) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, " | ")
}
