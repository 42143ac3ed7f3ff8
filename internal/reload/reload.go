// Package reload turns a config file into the instances the registry serves
// and reloads them when the file changes or on SIGHUP.
package reload

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
		insts, def = []*ec2.Instance{inst}, registry.Default{Name: inst.Name, Implicit: true}
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
	// Apply takes a freshly loaded file into service and returns how many
	// instances it declares.
	Apply    func(ctx context.Context, file *config.File) (int, error)
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
		var n int
		if n, err = w.Apply(ctx, file); err == nil {
			w.Logger.Info("configuration reloaded", "reason", why, "file", w.Path, "instances", n)
			return
		}
	}
	w.Logger.Error("configuration not reloaded; still serving the previous one", "reason", why, "file", w.Path, "err", err)
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}
