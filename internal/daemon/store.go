package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/bolt"
	"github.com/imdsdev/imds/internal/store/etcd"
)

// openStore opens the store the config names: the bbolt file in the data
// directory, or the etcd cluster of store.etcd (then o.etcd is set, for
// followStore).
func (d *Daemon) openStore(o *opening) (ec2.InstanceStore, error) {
	e := o.file.Store.Etcd
	if e == nil {
		db, err := bolt.Open(filepath.Join(d.DataDir, "imds.db"))
		if err != nil {
			return nil, fmt.Errorf("data directory %s: %w", d.DataDir, err)
		}
		d.onClose(func(context.Context) error { return db.Close() })
		return db.Instances(), nil
	}
	// The bolt file no longer creates the data directory, which still holds
	// the signing key and the VM network's files.
	if err := os.MkdirAll(d.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", d.DataDir, err)
	}
	cfg := etcd.Config{Endpoints: e.Endpoints, Prefix: e.Prefix, CAFile: e.CA, CertFile: e.Cert, KeyFile: e.Key,
		Username: e.Username, Timeout: e.DialTimeout, Logger: d.Logger}
	if e.PasswordFile != "" {
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.password_file: %v", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
		if cfg.Password == "" {
			return nil, fmt.Errorf("store.etcd.password_file: %s is empty", e.PasswordFile)
		}
	}
	s, err := etcd.Open(o.ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store.etcd: %s", ec2.ErrorMessage(err))
	}
	d.onClose(func(context.Context) error { return s.Close() })
	o.etcd = s
	return s.Instances(), nil
}

// shareStore makes the registry share store.etcd with the other hosts:
// it follows the changes they make, and, with a vm_network, allocates its
// addresses in etcd too, so that no two hosts hand out one address. With
// the bolt store, which only this daemon writes, it does nothing.
func (d *Daemon) shareStore(o *opening) error {
	if o.etcd == nil {
		return nil
	}
	// Stored instances derive from the cluster's seed, so that one gets
	// the same ID, MAC and names on every host; instances of this host's
	// config file keep the machine's. Nothing is served or written yet.
	seed, err := o.etcd.ClusterSeed(o.ctx)
	if err != nil {
		return fmt.Errorf("store.etcd: %s", ec2.ErrorMessage(err))
	}
	d.Registry.Derive.Seed = seed
	if err := d.Registry.Reload(o.ctx); err != nil {
		return fmt.Errorf("loading instances from etcd at %s: %s", o.etcd.Endpoints(), ec2.ErrorMessage(err))
	}
	if n := o.file.VMNetwork; n != nil {
		addrs, err := o.etcd.Addresses(o.ctx, n.Subnet, n.Gateway)
		if err != nil {
			return fmt.Errorf("vm_network: %w", err)
		}
		d.Registry.Addresses = addrs
	}
	if err := d.announce(o); err != nil {
		return err
	}
	d.Follower = &etcd.Follower{Store: o.etcd, Reload: d.Registry.Reload, Apply: d.Registry.ApplyStored, Overlays: d.Registry.LoadOverlays,
		ApplyOverlays: d.Registry.ApplyOverlays, Clock: o.clk, Logger: d.Logger}
	d.background(o.ctx, d.Follower.Start, d.Follower.Wait)
	return nil
}

// announce lists this daemon among the hosts of store.etcd, before it
// serves anything: a host whose name a live host holds stops here.
func (d *Daemon) announce(o *opening) error {
	// The name openRegistry found (hostName), which refuses to open on
	// etcd without one.
	name := d.Registry.Host
	p, err := o.etcd.Announce(o.ctx, ec2.Host{Name: name, Version: o.cfg.Version, Started: o.clk.Now()}, 0, o.clk)
	if err != nil {
		return fmt.Errorf("store.etcd: %s", ec2.ErrorMessage(err))
	}
	d.onClose(p.Close)
	o.presence = p
	return nil
}

// hostName is this host's name among those sharing a store, which
// instances pinned to it (ec2.Instance.Host) name: store.etcd.host, else
// the machine's host name (with bolt as well).
func hostName(s config.Store) (string, error) {
	if s.Etcd != nil && s.Etcd.Host != "" {
		return s.Etcd.Host, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("store.etcd.host is not set and the host name is unknown: %v", err)
	}
	return h, nil
}

// listHosts adds this daemon's metadata addresses to its entry, once they
// listen, and serves the hosts on the admin API.
func (d *Daemon) listHosts(o *opening) {
	if o.presence == nil {
		return
	}
	var listen []string
	for _, a := range d.Metadata.Addrs() {
		listen = append(listen, a.String())
	}
	if err := o.presence.SetListen(o.ctx, listen); err != nil {
		d.Logger.Warn("recording this host's addresses in etcd failed", "err", ec2.ErrorMessage(err))
	}
	d.Admin.SetHosts(etcd.Hosts{Store: o.etcd, Self: o.presence})
}

// storeStatus reports the store in the admin API's server status.
func (d *Daemon) storeStatus(o *opening) func() *admin.StoreStatus {
	if o.etcd == nil {
		// The host's name with bolt too: the libvirt hook pins its VMs to it.
		path, host := filepath.Join(d.DataDir, "imds.db"), d.Registry.Host
		return func() *admin.StoreStatus { return &admin.StoreStatus{Backend: "bolt", Path: path, Host: host} }
	}
	e, f, is, p := o.file.Store.Etcd, d.Follower, o.etcd.Instances(), o.presence
	return func() *admin.StoreStatus {
		online := f.Online()
		st := &admin.StoreStatus{Backend: "etcd", Endpoints: e.Endpoints, Prefix: e.Prefix, Online: &online, Revision: is.Revision(),
			LastContact: f.LastContact().UTC(), Resyncs: f.Resyncs(), Host: p.Name()}
		if id := p.Lease(); id != 0 {
			st.Lease = fmt.Sprintf("%x", id)
		}
		return st
	}
}
