package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/dnsmasq"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/ipam"
	"github.com/imdsdev/imds/internal/registry"
)

// vmNetwork is the DHCP/DNS side of a VM network: addresses per MAC and a
// dnsmasq kept in step with the registry.
type vmNetwork struct {
	cfg   *config.VMNetwork
	alloc *ipam.Allocator
	dns   *dnsmasq.Server
	log   *slog.Logger
	hosts chan []dnsmasq.Host // latest host list; older pending lists are replaced
	done  chan struct{}
	once  sync.Once
}

// openVMNetwork prepares the VM network of the config (nil when there is
// none) and hooks it into the registry, before instances are loaded so that
// the first host list covers them.
func openVMNetwork(cfg *config.VMNetwork, dataDir string, reg *registry.Registry, logger *slog.Logger) (*vmNetwork, error) {
	if cfg == nil {
		return nil, nil
	}
	alloc, err := ipam.Open(filepath.Join(dataDir, "ipam.json"), cfg.Subnet, cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("vm_network: %w", err)
	}
	v := &vmNetwork{cfg: cfg, alloc: alloc, log: logger, hosts: make(chan []dnsmasq.Host, 1), done: make(chan struct{})}
	v.dns = dnsmasq.New(dnsmasq.Config{
		Dir: filepath.Join(dataDir, "dnsmasq"), Interface: cfg.Bridge, Subnet: cfg.Subnet, Gateway: cfg.Gateway,
		Domain: cfg.Domain, Metadata: netip.MustParseAddr("169.254.169.254"), Netns: cfg.Netns,
	}, logger)
	reg.Addresses = alloc
	reg.OnChange = v.changed
	return v, nil
}

// changed receives every instance after a registry change (under its lock)
// and queues the host list for the dnsmasq goroutine.
func (v *vmNetwork) changed(insts []*ec2.Instance) {
	var hosts []dnsmasq.Host
	for _, inst := range insts {
		mac := inst.Primary().MAC
		for _, a := range inst.SourceAddrs {
			if ip, err := netip.ParseAddr(a); err == nil && v.cfg.Subnet.Contains(ip) && mac != "" {
				hosts = append(hosts, dnsmasq.Host{Name: inst.Name, MAC: mac, Addr: ip})
				break
			}
		}
	}
	select {
	case <-v.hosts: // drop the older pending list
	default:
	}
	v.hosts <- hosts
}

// start runs dnsmasq (or only writes its configuration) and the goroutine
// that applies host lists.
func (v *vmNetwork) start(ctx context.Context) error {
	if v.cfg.Managed {
		if err := v.dns.Start(ctx); err != nil {
			return fmt.Errorf("vm_network: starting dnsmasq: %w", err)
		}
	} else if err := v.dns.WriteConfig(); err != nil {
		return fmt.Errorf("vm_network: %w", err)
	}
	go func() {
		for {
			select {
			case <-v.done:
				return
			case hosts := <-v.hosts:
				if err := v.dns.SetHosts(hosts); err != nil {
					v.log.Warn("updating dnsmasq hosts failed", "err", err)
				}
			}
		}
	}()
	return nil
}

func (v *vmNetwork) close() {
	v.once.Do(func() {
		close(v.done)
		if v.cfg.Managed {
			v.dns.Stop()
		}
		v.alloc.Close()
	})
}
