package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/discovery/docker"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

// syncWait bounds how long Open waits for the first list of containers
// before serving: long enough for an engine that answers, short enough
// that an engine away does not hold up the rest of the server.
const syncWait = 3 * time.Second

// withoutImplicitDefault keeps the implicit default instance from
// answering requesters that no instance matches while a discovery source
// runs: before the first labelled container starts, an unlabelled one
// would otherwise get the default's metadata and credentials. The
// zero-configuration instance is not served at all then; one written
// under instance: stays, reachable by its own addresses.
func withoutImplicitDefault(discovering bool, file *config.File, insts []*ec2.Instance, def registry.Default, logger *slog.Logger) ([]*ec2.Instance, registry.Default) {
	if !discovering || !def.Implicit {
		return insts, def
	}
	if file.Instance == nil {
		insts = nil
	}
	logger.Info("Docker discovery is on: requesters that match no container or instance get 404, the default instance answers none of them")
	return insts, registry.Default{}
}

// startDiscovery starts following the Docker engine when the config asks,
// and waits (boundedly) for its first list so that start-up serves what
// docker ps shows.
func (d *Daemon) startDiscovery(o *opening) error {
	dc := o.file.Discovery.Docker
	if dc == nil {
		return nil
	}
	engine, err := docker.Dial(dc.Host)
	if err != nil {
		return err
	}
	d.onClose(func(context.Context) error { return engine.Close() })
	o.rolesFile.Store(o.file)
	src := &docker.Source{Engine: engine, Registry: d.Registry, Networks: dc.Networks, All: dc.All,
		Clock: o.clk, Logger: d.Logger.With("source", "docker"),
		Role: func(name string) (*ec2.Role, bool) {
			r, ok := o.rolesFile.Load().RoleNamed(name)
			if !ok {
				return nil, false
			}
			return &ec2.Role{Name: r.Name, InstanceProfileName: r.InstanceProfileName, InstanceProfileID: r.InstanceProfileID}, true
		}}
	o.docker = src
	d.background(o.ctx, src.Start, src.Wait)
	t := o.clk.NewTimer(syncWait)
	defer t.Stop()
	select {
	case <-src.Synced():
	case <-t.C():
		d.Logger.Warn("the Docker engine has not answered yet; serving without its containers until it does", "host", engine.DaemonHost())
	}
	return nil
}

// discoveryRoles gives the containers the roles of a reloaded file: each
// is looked at again, so that a role added or removed takes effect.
func (d *Daemon) discoveryRoles(o *opening, next *config.File) {
	if o.docker == nil {
		return
	}
	o.rolesFile.Store(next)
	o.docker.Resync()
}
