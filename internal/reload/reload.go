// Package reload turns a config file into the instances the registry serves
// and reloads them when the file changes or on SIGHUP.
package reload

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

// PollInterval is how often a Watcher checks the file for changes unless
// told otherwise.
const PollInterval = 2 * time.Second

// Instances returns the instances the config file declares and who
// answers requesters that none matches. Without instances: the file's
// instance: (or the zero-configuration instance) is an implicit default: it
// answers everyone while it is the only instance. imdsv2, when set,
// overrides the IMDSv2 mode of all of them.
func Instances(file *config.File, derive ec2.DeriveOptions, imdsv2 string) ([]*ec2.Instance, registry.Default, error) {
	switch imdsv2 {
	case "", ec2.TokensOptional, ec2.TokensRequired:
	default:
		return nil, registry.Default{}, fmt.Errorf("--imdsv2: must be optional or required, got %q", imdsv2)
	}
	var insts []*ec2.Instance
	def := registry.Default{Name: file.DefaultInstance}
	if len(file.Instances) > 0 {
		var err error
		if insts, err = file.BuildInstances(derive); err != nil {
			return nil, registry.Default{}, err
		}
	} else {
		inst, err := file.BuildInstance(derive)
		if err != nil {
			return nil, registry.Default{}, err
		}
		insts, def = []*ec2.Instance{inst}, registry.Default{Name: inst.Name, Implicit: true, ZeroConfig: file.Instance == nil}
	}
	if imdsv2 != "" {
		for _, inst := range insts {
			inst.Metadata.HTTPTokens = imdsv2
		}
	}
	return insts, def, nil
}

// Watcher reloads the config file at Path on SIGHUP and when its
// modification time changes. A file that does not load, or that Apply
// refuses, is reported and what is served stays as it was.
type Watcher struct {
	Path string
	// Apply takes a freshly loaded file into service and says what it
	// changed.
	Apply    func(ctx context.Context, file *config.File) (Outcome, error)
	Clock    clock.Clock
	Interval time.Duration // PollInterval when zero
	Logger   *slog.Logger

	wg sync.WaitGroup
}

// Start runs the watcher until ctx is done.
func (w *Watcher) Start(ctx context.Context) {
	interval := w.Interval
	if interval <= 0 {
		interval = PollInterval
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	last := modTime(w.Path)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer signal.Stop(hup)
		for {
			t := w.Clock.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-hup:
				t.Stop()
				last = modTime(w.Path)
				w.Reload(ctx, "SIGHUP")
			case <-t.C():
				if m := modTime(w.Path); !m.Equal(last) {
					last = m
					w.Reload(ctx, "file changed")
				}
			}
		}
	}()
}

// Wait waits for the goroutine of Start; cancel its context first.
func (w *Watcher) Wait() { w.wg.Wait() }

// Reload loads the file once and applies it, logging why and the outcome.
func (w *Watcher) Reload(ctx context.Context, why string) {
	file, err := config.Load(w.Path)
	if err == nil {
		var out Outcome
		if out, err = w.Apply(ctx, file); err == nil {
			attrs := []any{"reason", why, "file", w.Path, "instances", out.Instances, "changed", strings.Join(out.Changed, ",")}
			if len(out.NeedRestart) > 0 {
				attrs = append(attrs, "needs_restart", strings.Join(out.NeedRestart, ","))
				w.Logger.Warn("configuration reloaded, but some changes take a restart of imds serve", attrs...)
				return
			}
			w.Logger.Info("configuration reloaded", attrs...)
			return
		}
	}
	w.Logger.Error("configuration not reloaded; still serving the previous one", "reason", why, "file", w.Path, "err", err)
}

// Outcome is what a reload did.
type Outcome struct {
	// Instances is how many instances the file declares.
	Instances int
	// Changed names the settings that changed and are in force now (see
	// Diff); NeedRestart those that changed but take a restart.
	Changed, NeedRestart []string
}

// Diff compares two loads of a config file by top-level setting: changed
// are those a reload puts in force (instances, roles, identity, ...),
// restart those that only a restart of imds serve changes (listeners,
// directories, logging, limits, the VM network).
func Diff(prev, next *config.File) (changed, restart []string) {
	for _, c := range []struct {
		key        string
		prev, next any
		reloadable bool
	}{
		{"instances", []any{prev.Instances, prev.Instance, prev.DefaultInstance}, []any{next.Instances, next.Instance, next.DefaultInstance}, true},
		{"roles", withoutLines(prev.Roles), withoutLines(next.Roles), true},
		{"identity", prev.Identity, next.Identity, true},
		{"hop_distances", prev.HopDistances, next.HopDistances, true},
		{"allowed_hosts", prev.AllowedHosts, next.AllowedHosts, true},
		{"user_data_templates", prev.Templates, next.Templates, true},
		{"listen", prev.Listen, next.Listen, false},
		{"data_dir", prev.DataDir, next.DataDir, false},
		{"admin", prev.Admin, next.Admin, false},
		{"metrics", prev.Metrics, next.Metrics, false},
		{"log", prev.Log, next.Log, false},
		{"credentials", prev.Credentials, next.Credentials, false},
		{"limits", prev.Limits, next.Limits, false},
		{"vm_network", prev.VMNetwork, next.VMNetwork, false},
		{"discovery", prev.Discovery, next.Discovery, false},
		{"store", prev.Store, next.Store, false},
	} {
		if reflect.DeepEqual(c.prev, c.next) {
			continue
		}
		if c.reloadable {
			changed = append(changed, c.key)
		} else {
			restart = append(restart, c.key)
		}
	}
	return changed, restart
}

// withoutLines drops where roles are defined: moving one is no change.
func withoutLines(roles []config.Role) []config.Role {
	out := make([]config.Role, len(roles))
	for i, r := range roles {
		r.Line = 0
		out[i] = r
	}
	return out
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}
