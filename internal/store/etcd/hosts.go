package etcd

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// DefaultHostTTL is how long a host stays listed after it last renewed
// its lease.
const DefaultHostTTL = 10 * time.Second

// hostRecord is the value of <prefix>hosts/<name>.
type hostRecord struct {
	Name    string    `json:"name"`
	Listen  []string  `json:"listen,omitempty"`
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
}

// Presence keeps this host listed under <prefix>hosts/<name> with a lease
// it renews; if the lease is lost (etcd away longer than its TTL) it
// registers again once etcd answers.
type Presence struct {
	s      *Store
	key    string
	rec    hostRecord
	ttl    time.Duration
	clk    clock.Clock
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	lease clientv3.LeaseID
}

// Announce lists this host (h.Name, unique among live hosts) with a lease
// of ttl (DefaultHostTTL when zero) and keeps it renewed until Close. It
// refuses a name that a live host holds.
func (s *Store) Announce(ctx context.Context, h ec2.Host, ttl time.Duration, clk clock.Clock) (*Presence, error) {
	if h.Name == "" || strings.ContainsAny(h.Name, "/ \t\n") {
		return nil, ec2.Errorf(ec2.EINVALID, "host name %q: must be non-empty, without / or spaces", h.Name)
	}
	if ttl <= 0 {
		ttl = DefaultHostTTL
	}
	if clk == nil {
		clk = clock.Real{}
	}
	p := &Presence{s: s, key: s.prefix + "hosts/" + h.Name, ttl: ttl, clk: clk,
		rec: hostRecord{Name: h.Name, Listen: h.Listen, Version: h.Version, Started: h.Started.UTC()}}
	// A name held by a lease still running may be this host's own, left by
	// an imds that was killed: wait out one TTL before calling it taken.
	deadline := clk.Now().Add(ttl + time.Second)
	for said := false; ; said = true {
		err := p.register(ctx)
		if err == nil {
			break
		}
		if ec2.ErrorCode(err) != ec2.ECONFLICT || !clk.Now().Before(deadline) {
			return nil, err
		}
		if !said {
			s.logger.Info("this host's name is held in etcd, perhaps by an imds that stopped without a word: waiting for its lease to run out",
				"host", h.Name, "ttl", ttl.String())
		}
		t := clk.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C():
		}
	}
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Go(func() { p.run(ctx) })
	return p, nil
}

// register grants a lease and puts the host's key under it, if no other
// live host holds the name.
func (p *Presence) register(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	lease, err := p.s.client.Grant(cctx, int64(p.ttl/time.Second))
	if err != nil {
		return p.s.fail(cctx, "a lease for host "+p.key, err)
	}
	p.mu.Lock()
	v, err := json.Marshal(p.rec)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	resp, err := p.s.client.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(p.key), "=", 0)).
		Then(clientv3.OpPut(p.key, string(v), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(p.key)).Commit()
	if err != nil {
		return p.s.fail(cctx, "the registration of host "+p.key, err)
	}
	if !resp.Succeeded {
		p.s.client.Revoke(cctx, lease.ID)
		name := strings.TrimPrefix(p.key, p.s.prefix+"hosts/")
		return ec2.Errorf(ec2.ECONFLICT, "host name %q is held by another live imds host on etcd at %s: give each host its own store.etcd.host", name, p.s.endpoints)
	}
	p.mu.Lock()
	p.lease = lease.ID
	p.mu.Unlock()
	return nil
}

// run renews the lease, and registers again when it is lost.
func (p *Presence) run(ctx context.Context) {
	lost := false
	for ctx.Err() == nil {
		p.mu.Lock()
		id := p.lease
		p.mu.Unlock()
		if id != 0 {
			ch, err := p.s.client.KeepAlive(ctx, id)
			if err == nil {
				for range ch {
				}
			}
			if ctx.Err() != nil {
				return
			}
			if !lost {
				p.s.logger.Warn("this host's lease in etcd ran out: other hosts no longer list it until etcd answers again",
					"endpoints", p.s.endpoints, "host", p.key)
				lost = true
			}
			p.mu.Lock()
			p.lease = 0
			p.mu.Unlock()
		}
		if err := p.register(ctx); err == nil {
			p.s.logger.Info("this host is listed in etcd again", "host", p.key)
			lost = false
			continue
		}
		t := p.clk.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// SetListen records the metadata addresses, known once the listeners are
// open (after Announce, which comes first so that a host whose name is
// taken stops before it serves anything).
func (p *Presence) SetListen(ctx context.Context, listen []string) error {
	p.mu.Lock()
	p.rec.Listen = slices.Clone(listen)
	v, err := json.Marshal(p.rec)
	id := p.lease
	p.mu.Unlock()
	if err != nil || id == 0 {
		return err // without a lease, the next registration writes it
	}
	cctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	_, err = p.s.client.Txn(cctx).If(clientv3.Compare(clientv3.LeaseValue(p.key), "=", id)).
		Then(clientv3.OpPut(p.key, string(v), clientv3.WithLease(id))).Commit()
	return p.s.fail(cctx, "the addresses of host "+p.key, err)
}

// Close stops renewing and removes the host from the list at once.
func (p *Presence) Close(ctx context.Context) error {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	id := p.lease
	p.mu.Unlock()
	if id == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	_, err := p.s.client.Revoke(cctx, id)
	return p.s.fail(cctx, "the removal of host "+p.key, err)
}

// Name is the host's name in the list.
func (p *Presence) Name() string { return p.rec.Name }

// Lease is the current lease ID, 0 while none is held.
func (p *Presence) Lease() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(p.lease)
}

// Hosts lists the hosts of a Store, marking self (the Presence of this
// host; nil for none).
type Hosts struct {
	Store *Store
	Self  *Presence
}

var _ ec2.HostService = Hosts{}

// ListHosts implements ec2.HostService: the hosts whose lease is live,
// with the time left on it.
func (h Hosts) ListHosts(ctx context.Context) ([]ec2.Host, error) {
	s := h.Store
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Get(cctx, s.prefix+"hosts/", clientv3.WithPrefix())
	if err != nil {
		return nil, s.fail(cctx, "the list of hosts", err)
	}
	var out []ec2.Host
	for _, kv := range resp.Kvs {
		var r hostRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, ec2.Errorf(ec2.EINTERNAL, "host record %s in etcd at %s is corrupt: %v", kv.Key, s.endpoints, err)
		}
		host := ec2.Host{Name: r.Name, Listen: r.Listen, Version: r.Version, Started: r.Started,
			Lease: strconv.FormatInt(kv.Lease, 16)}
		if ttl, err := s.client.TimeToLive(cctx, clientv3.LeaseID(kv.Lease)); err == nil && ttl.TTL > 0 {
			host.TTL = time.Duration(ttl.TTL) * time.Second
		}
		host.Self = h.Self != nil && h.Self.Lease() == kv.Lease
		out = append(out, host)
	}
	slices.SortFunc(out, func(a, b ec2.Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
