package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

// configPollInterval is how often the config file is checked for changes.
const configPollInterval = 2 * time.Second

// configInstances returns the instances the config file declares and who
// answers requesters that none matches. Without instances: the file's
// instance: (or the zero-configuration instance) is an implicit default: it
// answers everyone while it is the only instance. imdsv2, when set,
// overrides the IMDSv2 mode of all of them.
func configInstances(file *config.File, derive ec2.DeriveOptions, imdsv2 string) ([]*ec2.Instance, registry.Default, error) {
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

// watchConfig reloads the instances of the config file on SIGHUP and when
// the file changes. A file that does not load is reported and the instances
// already served stay as they are. Other settings (listen addresses, roles,
// identity) take a restart.
func (d *daemon) watchConfig(ctx context.Context) {
	d.configDone = make(chan struct{})
	if d.configPath == "" {
		close(d.configDone)
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	last := modTime(d.configPath)
	go func() {
		defer close(d.configDone)
		defer signal.Stop(hup)
		t := time.NewTicker(configPollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				last = modTime(d.configPath)
				d.reloadConfig(ctx, "SIGHUP")
			case <-t.C:
				if m := modTime(d.configPath); !m.Equal(last) {
					last = m
					d.reloadConfig(ctx, "file changed")
				}
			}
		}
	}()
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func (d *daemon) reloadConfig(ctx context.Context, why string) {
	file, err := config.Load(d.configPath)
	if err == nil {
		var insts []*ec2.Instance
		var def registry.Default
		if insts, def, err = configInstances(file, d.derive, d.imdsv2); err == nil {
			err = d.registry.SetConfig(ctx, insts, def)
			if err == nil {
				d.log.Info("configuration reloaded", "reason", why, "file", d.configPath, "instances", len(insts))
				return
			}
		}
	}
	d.log.Error("configuration not reloaded; still serving the previous one", "reason", why, "file", d.configPath, "err", err)
}
