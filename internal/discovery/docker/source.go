package docker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// Engine is the part of the Engine API a Source uses; *client.Client has it.
type Engine interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// Registry takes what a Source found; *registry.Registry is one.
type Registry interface {
	SetDiscovered(ctx context.Context, origin string, specs []*ec2.Instance) map[string]error
}

// Dial returns a client for the engine at host (unix:///path or
// tcp://host:port); empty means DOCKER_HOST, else the default socket. It
// does not connect: a Source reconnects whenever the engine is away.
func Dial(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("discovery.docker.host: %w", err)
	}
	return c, nil
}

// Backoff bounds between reconnections to the engine.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 5 * time.Second
)

// callTimeout bounds one list or inspect call, so that a hung engine cannot
// hold changes back for ever.
const callTimeout = 10 * time.Second

// Source follows one engine and keeps the registry's docker instances equal
// to its opted-in running containers.
type Source struct {
	Engine   Engine
	Registry Registry
	// Networks are the networks whose addresses identify containers, in
	// order of preference for the primary interface; empty means all.
	Networks []string
	// All serves every running container on Networks, labelled or not.
	All bool
	// Role returns a role of the config by name; false for an unknown one.
	Role   func(name string) (*ec2.Role, bool)
	Clock  clock.Clock
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before reconnecting; zero
	// means the package defaults.
	MinBackoff, MaxBackoff time.Duration

	mu       sync.Mutex               // serialises changes of the fields below
	specs    map[string]*ec2.Instance // container ID → the instance it asks for
	problems map[string]string        // container ID → what was last said about it
	served   map[string]string        // container ID → instance name served
	wg       sync.WaitGroup
	once     sync.Once
	synced   chan struct{}
	kick     chan struct{} // asks for a fresh list
}

// Resync makes the source list the containers again and look at each anew,
// for a change outside the engine (the roles of a reloaded config).
func (s *Source) Resync() {
	s.init()
	select {
	case s.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Synced is closed once the first full list of containers is applied.
func (s *Source) Synced() <-chan struct{} {
	s.init()
	return s.synced
}

func (s *Source) init() {
	s.once.Do(func() {
		s.synced, s.kick = make(chan struct{}), make(chan struct{}, 1)
		s.specs, s.problems, s.served = map[string]*ec2.Instance{}, map[string]string{}, map[string]string{}
		if s.Clock == nil {
			s.Clock = clock.Real{}
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.MinBackoff <= 0 {
			s.MinBackoff = MinBackoff
		}
		if s.MaxBackoff <= 0 {
			s.MaxBackoff = MaxBackoff
		}
	})
}

// Start follows the engine until ctx is done.
func (s *Source) Start(ctx context.Context) {
	s.init()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx)
	}()
}

// Wait returns once the goroutine of Start has ended.
func (s *Source) Wait() { s.wg.Wait() }

func (s *Source) run(ctx context.Context) {
	backoff := s.MinBackoff
	for {
		synced, err := s.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = s.MinBackoff
		}
		// The instances stay as they were while the engine is away: its
		// containers may well still run; the next list corrects them.
		s.Logger.Warn("Docker engine unreachable or its event stream ended; reconnecting", "err", err, "retry_in", backoff)
		t := s.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		backoff = min(backoff*2, s.MaxBackoff)
	}
}

// eventFilter asks the engine only for what changes an instance.
func eventFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("type", string(events.NetworkEventType)),
		filters.Arg("event", "start"), filters.Arg("event", "restart"), filters.Arg("event", "unpause"),
		filters.Arg("event", "rename"), filters.Arg("event", "die"), filters.Arg("event", "stop"),
		filters.Arg("event", "destroy"), filters.Arg("event", "connect"), filters.Arg("event", "disconnect"),
	)
}

// follow subscribes to the events, then lists the running containers (so
// that nothing happens unseen in between), applies the list, and applies
// each event until the stream ends. synced says whether the list was applied.
func (s *Source) follow(ctx context.Context) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := s.Engine.Events(ctx, events.ListOptions{Filters: eventFilter()})
	if err := s.resync(ctx); err != nil {
		return false, err
	}
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err, ok := <-errs:
			if !ok {
				err = errors.New("event stream closed")
			}
			return true, err
		case m := <-msgs:
			s.handle(ctx, m)
		case <-s.kick:
			if err := s.resync(ctx); err != nil {
				return true, err
			}
		}
	}
}

// resync replaces everything known with a fresh list.
func (s *Source) resync(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	list, err := s.Engine.ContainerList(lctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("status", "running"))})
	cancel()
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	specs := map[string]*ec2.Instance{}
	for _, c := range list {
		info, err := s.inspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // gone since the list: its destroy event follows
		}
		if err != nil {
			return err
		}
		if spec := s.spec(info); spec != nil {
			specs[info.ID] = spec
		}
	}
	s.mu.Lock()
	s.specs = specs
	s.applyLocked(ctx)
	n := len(s.served)
	s.mu.Unlock()
	s.Logger.Info("Docker engine synchronised", "running_containers", len(list), "instances", n)
	select {
	case <-s.synced:
	default:
		close(s.synced)
	}
	return nil
}

func (s *Source) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := s.Engine.ContainerInspect(ctx, id)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return info, fmt.Errorf("inspecting container %s: %w", shortID(id), err)
	}
	return info, err
}

// handle applies one event. An event it cannot use is logged and skipped:
// the stream goes on.
func (s *Source) handle(ctx context.Context, m events.Message) {
	var id string
	switch m.Type {
	case events.ContainerEventType:
		id = m.Actor.ID
	case events.NetworkEventType:
		id = m.Actor.Attributes["container"]
	}
	if !isContainerID(id) {
		s.Logger.Warn("unexpected Docker event skipped", "type", printable(string(m.Type)), "action", printable(string(m.Action)), "id", printable(id))
		return
	}
	switch m.Action {
	case "die", "stop", "destroy":
		s.forget(ctx, id)
	case "start", "restart", "unpause", "rename", "connect", "disconnect":
		info, err := s.inspect(ctx, id)
		switch {
		case cerrdefs.IsNotFound(err):
			s.forget(ctx, id)
		case err != nil:
			// The next resynchronisation corrects what this misses.
			s.Logger.Warn("Docker event not applied", "action", string(m.Action), "container", shortID(id), "err", err)
		default:
			spec := s.spec(info)
			s.mu.Lock()
			if spec == nil {
				delete(s.specs, id)
			} else {
				s.specs[id] = spec
			}
			s.applyLocked(ctx)
			s.mu.Unlock()
		}
	default:
		s.Logger.Warn("unexpected Docker event skipped", "type", string(m.Type), "action", printable(string(m.Action)), "container", shortID(id))
	}
}

func (s *Source) forget(ctx context.Context, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.specs[id]; !ok {
		return
	}
	delete(s.specs, id)
	s.applyLocked(ctx)
}

// applyLocked hands every spec to the registry and says what changed.
// s.mu is held.
func (s *Source) applyLocked(ctx context.Context) {
	ids := make([]string, 0, len(s.specs))
	for id := range s.specs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return s.specs[ids[i]].Name < s.specs[ids[j]].Name })
	specs := make([]*ec2.Instance, 0, len(ids))
	for _, id := range ids {
		specs = append(specs, s.specs[id])
	}
	errs := s.Registry.SetDiscovered(ctx, ec2.OriginDocker, specs)
	served := map[string]string{}
	for _, id := range ids {
		spec := s.specs[id]
		if err := errs[spec.Name]; err != nil {
			s.problem(id, "container not served", "err", ec2.ErrorMessage(err), "instance", spec.Name)
			continue
		}
		served[id] = spec.Name
		if s.served[id] != spec.Name {
			s.Logger.Info("container instance served", "container", shortID(id), "instance", spec.Name, "instance_id", spec.ID,
				"addresses", strings.Join(spec.SourceAddrs, ","), "mac", spec.Primary().MAC)
		}
	}
	for id, name := range s.served {
		if _, ok := served[id]; !ok {
			s.Logger.Info("container instance gone", "container", shortID(id), "instance", name)
		}
	}
	for id := range s.problems {
		if _, ok := s.specs[id]; !ok {
			delete(s.problems, id) // said again if it comes back
		}
	}
	s.served = served
}

// problem logs msg about a container once, until it changes.
func (s *Source) problem(id, msg string, args ...any) {
	key := msg + fmt.Sprint(args...)
	if s.problems[id] == key {
		return
	}
	s.problems[id] = key
	s.Logger.Warn(msg, append([]any{"container", shortID(id)}, args...)...)
}

// spec is the instance a container asks for, or nil if it does not opt in
// or asks for one it cannot have (said in the log).
func (s *Source) spec(c container.InspectResponse) *ec2.Instance {
	if c.ContainerJSONBase == nil || c.State == nil || !c.State.Running || !isContainerID(c.ID) {
		return nil
	}
	var labels map[string]string
	if c.Config != nil {
		labels = c.Config.Labels
	}
	cname := strings.TrimPrefix(c.Name, "/")
	l, lerr := ParseLabels(labels)
	ifaces := s.interfaces(c)
	optedIn := l.Enable != nil && *l.Enable
	if s.All && l.Enable == nil && len(ifaces) > 0 {
		optedIn = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !optedIn && lerr == nil:
		if l.Enable == nil && hasIMDSLabel(labels) {
			s.problem(c.ID, "container not served: it has imds.* labels but not imds.enable=true", "name", printable(cname))
		}
		return nil
	case lerr != nil:
		if optedIn || l.Enable == nil {
			s.problem(c.ID, "container not served: bad imds labels", "name", printable(cname), "err", strings.ReplaceAll(lerr.Error(), "\n", "; "))
		}
		return nil
	case len(ifaces) == 0:
		s.problem(c.ID, "container not served: it has no address on the networks imds watches", "name", printable(cname), "networks", strings.Join(s.Networks, ","))
		return nil
	}
	spec := &ec2.Instance{
		Name:         firstNonEmpty(l.Name, cname),
		ID:           "i-0" + c.ID[:16],
		InstanceType: l.InstanceType,
		UserData:     l.UserData,
		Interfaces:   ifaces,
		Tags:         l.Tags,
	}
	spec.Metadata.HTTPTokens = l.IMDSv2
	if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		spec.PendingTime = t.UTC().Truncate(time.Second)
	}
	for _, ni := range ifaces {
		spec.SourceAddrs = append(spec.SourceAddrs, ni.PrivateIPv4s...)
		spec.SourceAddrs = append(spec.SourceAddrs, ni.IPv6s...)
	}
	if !hasTag(spec.Tags, "Name") {
		spec.Tags = append([]ec2.Tag{{Key: "Name", Value: spec.Name}}, spec.Tags...)
	}
	if l.Role != "" {
		if r, ok := s.Role(l.Role); ok {
			spec.Role = r
		} else {
			// Never another role's credentials: this one has none.
			s.problem(c.ID, "container served without credentials: its imds.role names no role of the config", "instance", spec.Name, "role", l.Role)
		}
	}
	return spec
}

// interfaces are the container's endpoints on the watched networks, in the
// order of Networks (by name when all are watched).
func (s *Source) interfaces(c container.InspectResponse) []ec2.NetworkInterface {
	if c.NetworkSettings == nil {
		return nil
	}
	names := s.Networks
	if len(names) == 0 {
		for n := range c.NetworkSettings.Networks {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	var out []ec2.NetworkInterface
	for _, n := range names {
		ep := c.NetworkSettings.Networks[n]
		if ep == nil {
			continue
		}
		ni := ec2.NetworkInterface{DeviceNumber: len(out), MAC: strings.ToLower(ep.MacAddress)}
		if a, err := netip.ParseAddr(ep.IPAddress); err == nil && a.Is4() {
			ni.PrivateIPv4s = []string{a.String()}
			if p, err := a.Prefix(ep.IPPrefixLen); err == nil && ep.IPPrefixLen > 0 {
				ni.SubnetIPv4CIDR = p.String()
			}
		}
		if a, err := netip.ParseAddr(ep.GlobalIPv6Address); err == nil && a.Is6() {
			ni.IPv6s = []string{a.String()}
		}
		// Without an address and a MAC the instance could not be matched
		// safely: such an endpoint (host networking, none) is left out.
		if (len(ni.PrivateIPv4s) == 0 && len(ni.IPv6s) == 0) || ni.MAC == "" {
			continue
		}
		out = append(out, ni)
	}
	return out
}

func isContainerID(id string) bool {
	if len(id) != 64 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

func shortID(id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	return printable(id)
}

func hasTag(tags []ec2.Tag, key string) bool {
	for _, t := range tags {
		if t.Key == key {
			return true
		}
	}
	return false
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func hasIMDSLabel(labels map[string]string) bool {
	for k := range labels {
		if strings.HasPrefix(k, Prefix) {
			return true
		}
	}
	return false
}
