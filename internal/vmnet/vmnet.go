// Package vmnet is the DHCP/DNS side of a VM network: an address per MAC
// from internal/ipam and a dnsmasq kept in step with the instances.
package vmnet

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
)

// Network is an open VM network. Hand Alloc to the registry as its address
// allocator and Changed as its change callback, then Start it.
type Network struct {
	cfg   *config.VMNetwork
	alloc *ipam.Allocator
	dns   *dnsmasq.Server
	log   *slog.Logger
	hosts chan func() []*ec2.Instance // latest instances; older pending lists are replaced
	done  chan struct{}
	loop  sync.WaitGroup
	once  sync.Once
}

// Open prepares the VM network cfg with its state under dataDir (the
// address leases and dnsmasq's files). It starts nothing.
func Open(cfg *config.VMNetwork, dataDir string, logger *slog.Logger) (*Network, error) {
	alloc, err := ipam.Open(filepath.Join(dataDir, "ipam.json"), cfg.Subnet, cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("vm_network: %w", err)
	}
	v := &Network{cfg: cfg, alloc: alloc, log: logger, hosts: make(chan func() []*ec2.Instance, 1), done: make(chan struct{})}
	v.dns = dnsmasq.New(dnsmasq.Config{
		Dir: filepath.Join(dataDir, "dnsmasq"), Interface: cfg.Bridge, Subnet: cfg.Subnet, Gateway: cfg.Gateway,
		Domain: cfg.Domain, Metadata: netip.MustParseAddr("169.254.169.254"), Netns: cfg.Netns,
	}, logger)
	return v, nil
}

// Alloc is the address allocator of the network.
func (v *Network) Alloc() *ipam.Allocator { return v.alloc }

// DNS is the network's dnsmasq.
func (v *Network) DNS() *dnsmasq.Server { return v.dns }

// Changed receives every instance after a registry change (under the
// registry's lock, so it must not block): all returns them and costs O(n),
// so it is called by the goroutine Start runs, once for changes that came
// faster than dnsmasq took them.
func (v *Network) Changed(all func() []*ec2.Instance) {
	select {
	case <-v.hosts: // drop the older pending list
	default:
	}
	v.hosts <- all
}

// Hosts is the DHCP host list of insts: one entry per instance with a
// primary MAC and a source address in subnet.
func Hosts(subnet netip.Prefix, insts []*ec2.Instance) []dnsmasq.Host {
	var hosts []dnsmasq.Host
	for _, inst := range insts {
		mac := inst.Primary().MAC
		for _, a := range inst.SourceAddrs {
			if ip, err := netip.ParseAddr(a); err == nil && subnet.Contains(ip) && mac != "" {
				hosts = append(hosts, dnsmasq.Host{Name: inst.Name, MAC: mac, Addr: ip})
				break
			}
		}
	}
	return hosts
}

// Start runs dnsmasq (or, when the network is not managed, only writes its
// configuration) and the goroutine that applies host lists until Close.
func (v *Network) Start(ctx context.Context) error {
	if v.cfg.Managed {
		if err := v.dns.Start(ctx); err != nil {
			return fmt.Errorf("vm_network: starting dnsmasq: %w", err)
		}
	} else if err := v.dns.WriteConfig(); err != nil {
		return fmt.Errorf("vm_network: %w", err)
	}
	v.loop.Add(1)
	go func() {
		defer v.loop.Done()
		for {
			select {
			case <-v.done:
				return
			case all := <-v.hosts:
				if err := v.dns.SetHosts(Hosts(v.cfg.Subnet, all())); err != nil {
					v.log.Warn("updating dnsmasq hosts failed", "err", err)
				}
			}
		}
	}()
	return nil
}

// Close stops the goroutine and dnsmasq and closes the allocator. Closing
// twice, or a network never started, is harmless.
func (v *Network) Close() {
	v.once.Do(func() {
		close(v.done)
		v.loop.Wait()
		if v.cfg.Managed {
			v.dns.Stop()
		}
		v.alloc.Close()
	})
}
