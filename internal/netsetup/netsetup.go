// Package netsetup makes the EC2 metadata addresses, 169.254.169.254:80 and
// [fd00:ec2::254]:80, reach an imds server listening on another port, for
// processes on the host (or in named network namespaces) and for containers
// and VMs behind a Linux bridge. It is what `imds net up|down|status` runs.
//
// For local processes it adds the metadata address to lo and an nftables
// redirect in an output nat chain; for each bridge a prerouting nat rule
// rewrites the destination to the bridge's own address and the server's
// port, so that the server sees the requester's own source address (which
// is how it tells instances apart).
//
// Everything nftables lives in one table of our own, `table inet imds`,
// with the chains `output` and `prerouting`: `down` deletes the table. The
// addresses `up` added are recorded in a state file per namespace
// (StateDir/net-<netns or "host">.json, mode 0600) so that `down` removes
// exactly those and never an address that was there before.
//
// `up` is additive and idempotent: it merges the plan with what it recorded
// earlier in the namespace (bridges are added, IPv6 once on stays on, the
// port moves only when another is given), makes the table and addresses
// match the result, and changes nothing when they already do. A recorded
// bridge that no longer exists is dropped, with a printed change. `down
// --bridge` removes one bridge's rules. It validates the plan
// (port, namespaces, bridges and their addresses) before changing anything,
// applies the nftables part of each namespace as one atomic transaction and
// rolls back what the run did if a later step fails.
//
// Only Linux is supported; elsewhere every function returns an error
// wrapping errors.ErrUnsupported.
package netsetup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strings"
)

const (
	// DefaultPort is the port imds serve listens on by default.
	DefaultPort = 1338
	// DefaultStateDir is where the state files live by default: a
	// directory of its own, not /run/imds (the server's runtime directory
	// for its admin socket), which systemd removes when imds.service
	// stops; imds net down needs the state after that.
	DefaultStateDir = "/run/imds-net"
	// TableName is the name of our nftables table (family inet).
	TableName = "imds"
	// HostName names the current (host) namespace in Changes and state
	// file names.
	HostName = "host"
)

var (
	// MetadataIPv4 is the EC2 metadata address.
	MetadataIPv4 = netip.MustParseAddr("169.254.169.254")
	// MetadataIPv6 is the EC2 metadata address on IPv6 (Nitro instances).
	MetadataIPv6 = netip.MustParseAddr("fd00:ec2::254")
)

// ErrPermission is returned (wrapped) when the kernel refuses a change.
var ErrPermission = errors.New("imds net up needs root or CAP_NET_ADMIN")

// Plan is what `imds net up` sets up.
type Plan struct {
	// Port is the port the imds server listens on. When 0, the one up
	// recorded earlier in the namespace, else DefaultPort; another port
	// than the recorded one moves every rule there.
	Port int
	// Bridges are interfaces (usually Linux bridges) behind which
	// containers or VMs reach the host; their metadata traffic is sent to
	// the bridge's own address on Port. In each namespace of Netns. They
	// are added to those up set up earlier, which stay.
	Bridges []string
	// Netns are the named network namespaces (as in ip netns) to set up;
	// none means the current one (the host).
	Netns []string
	// IPv6 also sets up [fd00:ec2::254]:80. Once set up it stays, for
	// every bridge, until Down.
	IPv6 bool
}

// Change is one thing Up or Down changed.
type Change struct {
	// Netns is the namespace it was changed in ("" for the host).
	Netns string
	// What it was, e.g. "added 169.254.169.254/32 to lo".
	What string
}

func (c Change) String() string {
	if c.Netns == "" {
		return c.What
	}
	return "netns " + c.Netns + ": " + c.What
}

// StatusOptions selects what Status looks at.
type StatusOptions struct {
	// Port is the port the server should listen on; when 0, the one
	// imds net up recorded, else DefaultPort.
	Port int
	// Netns is the namespace to look at; "" is the current one.
	Netns string
	// StateDir holds the state files (DefaultStateDir when "").
	StateDir string
	// ProbePath is the path the end-to-end probe requests
	// (/latest/meta-data/instance-id when "").
	ProbePath string
}

// Report is what Status found.
type Report struct {
	Netns string
	// Port is the server's port that was checked; Recorded tells whether
	// it (and Bridges) came from what imds net up recorded.
	Port     int
	Recorded bool
	// Bridges are the bridges imds net up recorded, whose rules are checked.
	Bridges []string
	// Addresses are the metadata addresses present on lo.
	Addresses []netip.Prefix
	// Table tells whether table inet imds exists.
	Table bool
	// Rules are the descriptions (comments) of the rules in it, as
	// "chain: description".
	Rules []string
	// Diagnosis are the findings, one line each; the last one is
	// "OK: metadata reachable (instance i-…)" when all is well.
	Diagnosis []string
	// Paths are the paths probed, one per address family: lo, then each
	// bridge.
	Paths []Path
	// InstanceID is what the probe through lo read, if it succeeded.
	InstanceID string
	// OK tells whether everything up set up is in place and every path
	// reaches imds (a 404 from imds for a requester that is not an
	// instance counts as reaching it).
	OK bool
}

// Path is one way to the metadata service that up set up, as Status
// probed it the way a client there would.
type Path struct {
	// Name says whose path it is, e.g. "lo 169.254.169.254:80" (the
	// namespace's own processes) or "bridge br0 169.254.169.254:80"
	// (containers and VMs behind br0).
	Name string
	// Target is the address probed (for a bridge, where its DNAT leads).
	Target string
	// OK tells whether imds answered there: with an instance ID, or with
	// 404 because the probe's source is not an instance.
	OK bool
	// InstanceID is what the probe read, if any.
	InstanceID string
	// Finding says what the probe found; Fix what to do (or, for a 404,
	// how to give the requester an instance).
	Finding, Fix string
}

// portSource says, for a diagnosis, where the port came from.
func (r *Report) portSource() string {
	if r.Recorded {
		return " (recorded by imds net up)"
	}
	return ""
}

// String renders the report for people.
func (r *Report) String() string {
	var b strings.Builder
	where := "host"
	if r.Netns != "" {
		where = "netns " + r.Netns
	}
	fmt.Fprintf(&b, "%s:\n", where)
	if r.Port != 0 {
		fmt.Fprintf(&b, "  server port %d%s\n", r.Port, r.portSource())
	}
	for _, br := range r.Bridges {
		fmt.Fprintf(&b, "  bridge %s (recorded by imds net up)\n", br)
	}
	if len(r.Addresses) == 0 {
		b.WriteString("  addresses on lo: none of the metadata addresses\n")
	}
	for _, a := range r.Addresses {
		fmt.Fprintf(&b, "  address %s on lo\n", a)
	}
	if r.Table {
		fmt.Fprintf(&b, "  table inet %s: %d rules\n", TableName, len(r.Rules))
		for _, rule := range r.Rules {
			fmt.Fprintf(&b, "    %s\n", rule)
		}
	} else {
		fmt.Fprintf(&b, "  table inet %s: absent\n", TableName)
	}
	for _, d := range r.Diagnosis {
		fmt.Fprintf(&b, "%s\n", d)
	}
	return b.String()
}

// Recorded returns the namespaces in which imds net up recorded a setup in
// stateDir ("" for the host), sorted, the host first.
func Recorded(stateDir string) ([]string, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "net-")
		if n, ok2 := strings.CutSuffix(n, ".json"); ok && ok2 && !e.IsDir() {
			if n == HostName {
				n = ""
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Up sets up plan and returns what it changed (nothing when all was in
// place). On error nothing this run changed is left behind.
func Up(ctx context.Context, plan Plan, stateDir string) ([]Change, error) {
	if plan.Port < 0 || plan.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range (1-65535)", plan.Port)
	}
	if err := checkBridges(plan.Bridges); err != nil {
		return nil, err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return up(ctx, plan, stateDir)
}

// Down removes what Up set up in each namespace of netns (none: the host):
// the table inet imds and the addresses Up recorded as added. Without
// anything to remove it does nothing and returns no error.
func Down(ctx context.Context, netns []string, stateDir string) ([]Change, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return down(ctx, netns, stateDir)
}

// DownBridges removes, in each namespace of netns (none: the host), only
// the rules Up set up for the named bridges, and forgets them; the rest
// stays. A bridge that is not set up there changes nothing.
func DownBridges(ctx context.Context, netns, bridges []string, stateDir string) ([]Change, error) {
	if err := checkBridges(bridges); err != nil {
		return nil, err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return downBridges(ctx, netns, bridges, stateDir)
}

func checkBridges(bridges []string) error {
	for _, b := range bridges {
		if b == "" || len(b) > 15 || strings.ContainsAny(b, "/ \x00") {
			return fmt.Errorf("bad bridge name %q", b)
		}
	}
	return nil
}

// Status reports what is in place in one namespace and probes the metadata
// address end to end. The error is for failures to look, not for a broken
// setup: that is Report.OK and Report.Diagnosis.
func Status(ctx context.Context, opts StatusOptions) (*Report, error) {
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range (1-65535)", opts.Port)
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.ProbePath == "" {
		opts.ProbePath = "/latest/meta-data/instance-id"
	}
	return status(ctx, opts)
}
