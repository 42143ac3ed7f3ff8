//go:build linux

package netsetup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/imdsdev/imds/internal/atomicfile"
)

// commentPrefix starts the comment of every rule we add.
const commentPrefix = "imds: "

// target is one network namespace with netlink and nftables handles in it.
type target struct {
	name string         // "" for the current namespace
	ns   netns.NsHandle // -1 for the current namespace
	nl   *netlink.Handle
	nft  *nftables.Conn
	lo   netlink.Link
}

func openTarget(name string) (*target, error) {
	t := &target{name: name, ns: -1}
	var err error
	if name == "" {
		t.nl, err = netlink.NewHandle()
		if err == nil {
			t.nft, err = nftables.New()
		}
	} else {
		if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			return nil, fmt.Errorf("unknown network namespace %q", name)
		}
		t.ns, err = netns.GetFromName(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("unknown network namespace %q (not in /run/netns; see ip netns list)", name)
			}
			return nil, permErr(fmt.Errorf("opening network namespace %q: %w", name, err))
		}
		t.nl, err = netlink.NewHandleAt(t.ns)
		if err == nil {
			t.nft, err = nftables.New(nftables.WithNetNSFd(int(t.ns)))
		}
	}
	if err != nil {
		t.close()
		return nil, permErr(fmt.Errorf("%s: netlink: %w", t.where(), err))
	}
	t.lo, err = t.nl.LinkByName("lo")
	if err != nil {
		t.close()
		return nil, permErr(fmt.Errorf("%s: no loopback interface: %w", t.where(), err))
	}
	return t, nil
}

func (t *target) close() {
	if t.nl != nil {
		t.nl.Close()
	}
	if t.ns >= 0 {
		t.ns.Close()
	}
}

func (t *target) where() string {
	if t.name == "" {
		return "host"
	}
	return "netns " + t.name
}

func (t *target) change(format string, args ...any) Change {
	return Change{Netns: t.name, What: fmt.Sprintf(format, args...)}
}

// permErr turns a permission error into one that says what is needed.
func permErr(err error) error {
	if err != nil && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)) {
		return fmt.Errorf("%w: %v", ErrPermission, err)
	}
	return err
}

// ---- nftables ----

// ruleSpec is one rule of our table; comment identifies it.
type ruleSpec struct {
	chain   string
	comment string
	exprs   []expr.Any
}

// chainSpecs are the chains of our table, in order.
var chainSpecs = []struct {
	name string
	hook *nftables.ChainHook
}{
	{"output", nftables.ChainHookOutput},
	{"prerouting", nftables.ChainHookPrerouting},
}

func imdsTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// matchDst matches IPv4 or IPv6 packets to addr, TCP port 80.
func matchDst(addr netip.Addr) []expr.Any {
	proto, off := byte(unix.NFPROTO_IPV4), uint32(16)
	if addr.Is6() {
		proto, off = unix.NFPROTO_IPV6, 24
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(addr.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(80)},
	}
}

func ipWord(a netip.Addr) string {
	if a.Is6() {
		return "ip6"
	}
	return "ip"
}

func redirectComment(a netip.Addr, port int) string {
	return fmt.Sprintf("%s%s daddr %s tcp dport 80 redirect to :%d", commentPrefix, ipWord(a), a, port)
}

func redirectRule(a netip.Addr, port int) ruleSpec {
	exprs := append(matchDst(a),
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.Redir{RegisterProtoMin: 1},
	)
	return ruleSpec{chain: "output", comment: redirectComment(a, port), exprs: exprs}
}

func dnatRule(bridge string, a, to netip.Addr, port int) ruleSpec {
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, bridge)
	fam := uint32(unix.NFPROTO_IPV4)
	if a.Is6() {
		fam = unix.NFPROTO_IPV6
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
	}
	exprs = append(exprs, matchDst(a)...)
	exprs = append(exprs,
		&expr.Immediate{Register: 1, Data: to.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
	c := fmt.Sprintf("%siifname %q %s daddr %s tcp dport 80 dnat to %s", commentPrefix, bridge, ipWord(a), a,
		netip.AddrPortFrom(to, uint16(port)))
	return ruleSpec{chain: "prerouting", comment: c, exprs: exprs}
}

// tableState is what our table holds: chain name → rule comments, in
// order. nil when the table does not exist.
type tableState map[string][]string

func (s tableState) equal(o tableState) bool {
	if (s == nil) != (o == nil) || len(s) != len(o) {
		return false
	}
	for c, r := range s {
		or, ok := o[c]
		if !ok || !slices.Equal(r, or) {
			return false
		}
	}
	return true
}

// readTable reads our table: its chains and their rules' comments. The
// rules are returned too, for a rollback.
func (t *target) readTable() (tableState, []*nftables.Chain, []*nftables.Rule, error) {
	tables, err := t.nft.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, nil, permErr(fmt.Errorf("%s: listing nftables tables: %w", t.where(), err))
	}
	found := false
	for _, tb := range tables {
		found = found || tb.Name == TableName
	}
	if !found {
		return nil, nil, nil, nil
	}
	chains, err := t.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, nil, permErr(fmt.Errorf("%s: listing nftables chains: %w", t.where(), err))
	}
	st := tableState{}
	var ours []*nftables.Chain
	var rules []*nftables.Rule
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		ours = append(ours, c)
		rs, err := t.nft.GetRules(imdsTable(), c)
		if err != nil {
			return nil, nil, nil, permErr(fmt.Errorf("%s: listing the rules of chain %s: %w", t.where(), c.Name, err))
		}
		// A chain with a hook other than ours is not what we would make:
		// a marker makes the state differ.
		key := c.Name
		if want := chainHook(c.Name); want == nil || c.Hooknum == nil || *c.Hooknum != *want || c.Type != nftables.ChainTypeNAT {
			key = c.Name + " (foreign)"
		}
		st[key] = []string{}
		for _, r := range rs {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			st[key] = append(st[key], comment)
			rules = append(rules, r)
		}
	}
	return st, ours, rules, nil
}

func chainHook(name string) *nftables.ChainHook {
	for _, c := range chainSpecs {
		if c.name == name {
			return c.hook
		}
	}
	return nil
}

func wantState(rules []ruleSpec) tableState {
	if len(rules) == 0 {
		return nil
	}
	st := tableState{}
	for _, r := range rules {
		st[r.chain] = append(st[r.chain], r.comment)
	}
	return st
}

// writeTable replaces our table by one with rules, atomically (one
// nftables transaction). No rules: the table is deleted.
func (t *target) writeTable(exists bool, rules []ruleSpec) error {
	tb := imdsTable()
	if exists {
		t.nft.DelTable(tb)
	}
	if len(rules) > 0 {
		t.nft.AddTable(tb)
		chains := map[string]*nftables.Chain{}
		for _, cs := range chainSpecs {
			used := false
			for _, r := range rules {
				used = used || r.chain == cs.name
			}
			if !used {
				continue
			}
			chains[cs.name] = t.nft.AddChain(&nftables.Chain{
				Name: cs.name, Table: tb, Type: nftables.ChainTypeNAT,
				Hooknum: cs.hook, Priority: nftables.ChainPriorityNATDest,
			})
		}
		for _, r := range rules {
			t.nft.AddRule(&nftables.Rule{
				Table: tb, Chain: chains[r.chain], Exprs: r.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment),
			})
		}
	}
	if err := t.nft.Flush(); err != nil {
		return permErr(fmt.Errorf("%s: writing nftables table inet %s: %w", t.where(), TableName, err))
	}
	return nil
}

// restoreTable puts back a table as readTable read it.
func (t *target) restoreTable(chains []*nftables.Chain, rules []*nftables.Rule) error {
	tb := imdsTable()
	t.nft.DelTable(tb)
	t.nft.AddTable(tb)
	byName := map[string]*nftables.Chain{}
	for _, c := range chains {
		byName[c.Name] = t.nft.AddChain(&nftables.Chain{
			Name: c.Name, Table: tb, Type: c.Type, Hooknum: c.Hooknum, Priority: c.Priority, Policy: c.Policy,
		})
	}
	for _, r := range rules {
		if r.Chain == nil || byName[r.Chain.Name] == nil {
			continue
		}
		t.nft.AddRule(&nftables.Rule{Table: tb, Chain: byName[r.Chain.Name], Exprs: r.Exprs, UserData: r.UserData})
	}
	return t.nft.Flush()
}

func (t *target) deleteTable() error {
	t.nft.DelTable(imdsTable())
	return t.nft.Flush()
}

// ---- addresses ----

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// loAddrs returns the addresses on lo.
func (t *target) loAddrs() (map[netip.Prefix]bool, error) {
	list, err := t.nl.AddrList(t.lo, netlink.FAMILY_ALL)
	if err != nil {
		return nil, permErr(fmt.Errorf("%s: listing the addresses of lo: %w", t.where(), err))
	}
	out := map[netip.Prefix]bool{}
	for _, a := range list {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out[netip.PrefixFrom(ip.Unmap(), ones)] = true
	}
	return out, nil
}

// hasAddr tells whether addr is on lo with any prefix length.
func hasAddr(present map[netip.Prefix]bool, addr netip.Addr) bool {
	for p := range present {
		if p.Addr() == addr {
			return true
		}
	}
	return false
}

func (t *target) addrChange(p netip.Prefix, add bool) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	var err error
	if add {
		err = t.nl.AddrAdd(t.lo, a)
	} else {
		err = t.nl.AddrDel(t.lo, a)
	}
	if err != nil {
		verb := "adding %s to lo"
		if !add {
			verb = "removing %s from lo"
		}
		return permErr(fmt.Errorf("%s: "+verb+": %w", t.where(), p, err))
	}
	return nil
}

// ---- state files ----

// stateName is the state file name of a namespace.
func stateName(netns string) string {
	if netns == "" {
		return "net-" + HostName + ".json"
	}
	return "net-" + netns + ".json"
}

// state is what Up recorded in one namespace.
type state struct {
	Netns string `json:"netns,omitempty"`
	// Added are the addresses Up added to lo (and Down removes).
	Added []string `json:"added_to_lo"`
	// The plan Up set up, which Status checks unless told otherwise.
	Port    int      `json:"port,omitempty"`
	Bridges []string `json:"bridges,omitempty"`
	IPv6    bool     `json:"ipv6,omitempty"`
}

// empty tells whether s records nothing (no file is kept for it).
func (s *state) empty() bool { return len(s.Added) == 0 && s.Port == 0 }

func (s *state) equal(o *state) bool {
	return slices.Equal(s.Added, o.Added) && s.Port == o.Port && slices.Equal(s.Bridges, o.Bridges) && s.IPv6 == o.IPv6
}

func readState(dir, netns string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName(netns)))
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Netns: netns}, nil
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %v", filepath.Join(dir, stateName(netns)), err)
	}
	return &s, nil
}

// writeState writes s, or removes the file when s records nothing.
func writeState(dir, netns string, s *state) error {
	path := filepath.Join(dir, stateName(netns))
	if s.empty() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// ---- up ----

// upTarget is the plan for one namespace, computed before changing anything.
type upTarget struct {
	*target
	port       int      // the port the rules lead to
	bridges    []string // the bridges set up, recorded ones first
	ipv6       bool
	rules      []ruleSpec
	want       tableState
	have       tableState
	haveChains []*nftables.Chain
	haveRules  []*nftables.Rule
	present    map[netip.Prefix]bool
	st         *state
	oldState   []byte // the state file before, nil when absent
	addrs      []netip.Prefix
	// notes explain changes before the rule by rule list: a port move,
	// a recorded bridge that is gone.
	notes []Change
	// tableChanges say what changes in the table, rule by rule.
	tableChanges []Change
}

// errNoBridge marks a bridge that does not exist.
var errNoBridge = errors.New("no such interface")

func (t *target) bridgeAddr(bridge string, v6 bool) (netip.Addr, error) {
	link, err := t.nl.LinkByName(bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) {
			return netip.Addr{}, fmt.Errorf("%s: unknown bridge %q (%w)", t.where(), bridge, errNoBridge)
		}
		return netip.Addr{}, permErr(fmt.Errorf("%s: bridge %q: %w", t.where(), bridge, err))
	}
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	list, err := t.nl.AddrList(link, fam)
	if err != nil {
		return netip.Addr{}, permErr(fmt.Errorf("%s: addresses of bridge %q: %w", t.where(), bridge, err))
	}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() || ip.IsLoopback() {
			continue
		}
		return ip, nil
	}
	if v6 {
		return netip.Addr{}, fmt.Errorf("%s: bridge %q has no global or ULA IPv6 address (needed with --ipv6, which stays on once given)", t.where(), bridge)
	}
	return netip.Addr{}, fmt.Errorf("%s: bridge %q has no IPv4 address: the metadata traffic is sent to the bridge's own address", t.where(), bridge)
}

// recordedSetup is what earlier runs of up set up in a namespace: the
// state file, completed from the comments of the table's rules (a state
// file from before up recorded its port and bridges, or one that was lost,
// must not make up forget a bridge).
func recordedSetup(st *state, have tableState) (port int, bridges []string, ipv6 bool) {
	port, ipv6 = st.Port, st.IPv6
	bridges = append(bridges, st.Bridges...)
	for _, c := range have["output"] {
		desc := strings.TrimPrefix(c, commentPrefix)
		if p, ok := strings.CutPrefix(desc[strings.LastIndexByte(desc, ' ')+1:], ":"); ok && port == 0 && strings.Contains(desc, " redirect to ") {
			port, _ = strconv.Atoi(p)
		}
		ipv6 = ipv6 || strings.HasPrefix(desc, "ip6 ")
	}
	for _, c := range have["prerouting"] {
		b, ok := ruleBridge(c)
		if ok && !slices.Contains(bridges, b) {
			bridges = append(bridges, b)
		}
		ipv6 = ipv6 || strings.Contains(c, " ip6 daddr ")
	}
	return port, bridges, ipv6
}

// ruleBridge returns the bridge a DNAT rule's comment names.
func ruleBridge(comment string) (string, bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix+"iifname ")
	if !ok {
		return "", false
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	b, err := strconv.Unquote(q)
	return b, err == nil
}

// bridgeRule tells whether a rule's comment is a DNAT rule of bridge b.
func bridgeRule(comment, b string) bool {
	rb, ok := ruleBridge(comment)
	return ok && rb == b
}

// prepareUp merges plan with what up recorded in t and computes the rules,
// reading everything and changing nothing.
func prepareUp(plan Plan, stateDir string, t *target) (*upTarget, error) {
	u := &upTarget{target: t}
	var err error
	if u.have, u.haveChains, u.haveRules, err = t.readTable(); err != nil {
		return nil, err
	}
	if u.present, err = t.loAddrs(); err != nil {
		return nil, err
	}
	if u.st, err = readState(stateDir, t.name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir, stateName(t.name)))
	if err == nil {
		u.oldState = b
	}

	recPort, recBridges, recV6 := recordedSetup(u.st, u.have)
	u.port = plan.Port
	if u.port == 0 {
		u.port = recPort
	}
	if u.port == 0 {
		u.port = DefaultPort
	}
	u.ipv6 = plan.IPv6 || recV6
	metas := []netip.Addr{MetadataIPv4}
	if u.ipv6 {
		metas = append(metas, MetadataIPv6)
	}
	for _, m := range metas {
		u.addrs = append(u.addrs, hostPrefix(m))
	}

	// The bridges: those recorded, then the new ones. A recorded bridge
	// that is gone (a docker network removed) is dropped, not an error.
	type bridgeTo struct {
		name string
		to   []netip.Addr // per metas
	}
	var bridges []bridgeTo
	all := append(slices.Clone(recBridges), plan.Bridges...)
	for _, br := range all {
		if slices.ContainsFunc(bridges, func(x bridgeTo) bool { return x.name == br }) {
			continue
		}
		named := slices.Contains(plan.Bridges, br)
		bt := bridgeTo{name: br}
		var berr error
		for _, m := range metas {
			to, err := t.bridgeAddr(br, m.Is6())
			if err != nil {
				berr = err
				break
			}
			bt.to = append(bt.to, to)
		}
		switch {
		case berr == nil:
			bridges = append(bridges, bt)
			u.bridges = append(u.bridges, br)
		case named:
			return nil, berr
		case errors.Is(berr, errNoBridge):
			u.notes = append(u.notes, t.change("bridge %s no longer exists: dropping its rules", br))
		default:
			u.notes = append(u.notes, t.change("dropping the rules of bridge %s: %v", br, strings.TrimPrefix(berr.Error(), t.where()+": ")))
		}
	}
	rulesAt := func(port int) []ruleSpec {
		var rules []ruleSpec
		for _, m := range metas {
			rules = append(rules, redirectRule(m, port))
		}
		for _, bt := range bridges {
			for i, m := range metas {
				rules = append(rules, dnatRule(bt.name, m, bt.to[i], port))
			}
		}
		return rules
	}
	u.rules = rulesAt(u.port)
	u.want = wantState(u.rules)

	// What changes in the table, said rule by rule; a port move as one line.
	if u.have != nil && !u.have.equal(u.want) {
		base := u.want
		if recPort != 0 && recPort != u.port {
			base = wantState(rulesAt(recPort))
		}
		for _, cs := range chainSpecs {
			for _, c := range u.have[cs.name] {
				if !slices.Contains(base[cs.name], c) {
					u.tableChanges = append(u.tableChanges, t.change("removed rule %s", strings.TrimPrefix(c, commentPrefix)))
				}
			}
		}
		for c := range u.have {
			if chainHook(c) == nil {
				u.tableChanges = append(u.tableChanges, t.change("removed chain %s", c))
			}
		}
		for _, cs := range chainSpecs {
			for _, c := range base[cs.name] {
				if !slices.Contains(u.have[cs.name], c) {
					u.tableChanges = append(u.tableChanges, t.change("added rule %s", strings.TrimPrefix(c, commentPrefix)))
				}
			}
		}
		if recPort != 0 && recPort != u.port {
			u.tableChanges = append(u.tableChanges, t.change("moved every rule from port %d to port %d", recPort, u.port))
		}
		if len(u.tableChanges) == 0 {
			u.tableChanges = append(u.tableChanges, t.change("rewrote table inet %s (%d rules)", TableName, len(u.rules)))
		}
	}
	return u, nil
}

func up(_ context.Context, plan Plan, stateDir string) (changes []Change, err error) {
	names := plan.Netns
	if len(names) == 0 {
		names = []string{""}
	}
	// Validate everything first.
	var targets []*upTarget
	defer func() {
		for _, u := range targets {
			u.close()
		}
	}()
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		t, err := openTarget(name)
		if err != nil {
			return nil, err
		}
		u, err := prepareUp(plan, stateDir, t)
		if err != nil {
			t.close()
			return nil, err
		}
		targets = append(targets, u)
	}

	// Apply, remembering how to undo.
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		var uerrs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if e := undo[i](); e != nil {
				uerrs = append(uerrs, e)
			}
		}
		if len(uerrs) > 0 {
			err = fmt.Errorf("%w; rolling back failed too: %v", err, errors.Join(uerrs...))
		}
		changes = nil
	}()
	for _, u := range targets {
		recorded := map[string]bool{}
		for _, a := range u.st.Added {
			recorded[a] = true
		}
		newState := &state{Netns: u.name, Port: u.port, Bridges: u.bridges, IPv6: u.ipv6}
		for _, p := range u.addrs {
			if hasAddr(u.present, p.Addr()) {
				if recorded[p.String()] {
					newState.Added = append(newState.Added, p.String())
				}
				continue
			}
			if err := u.addrChange(p, true); err != nil {
				return nil, err
			}
			undo = append(undo, func() error { return u.addrChange(p, false) })
			newState.Added = append(newState.Added, p.String())
			changes = append(changes, u.change("added %s to lo", p))
		}
		// Addresses we added earlier that the plan no longer wants.
		for _, a := range u.st.Added {
			p, perr := netip.ParsePrefix(a)
			if perr != nil || slices.Contains(u.addrs, p) {
				continue
			}
			if u.present[p] {
				if err := u.addrChange(p, false); err != nil {
					return nil, err
				}
				undo = append(undo, func() error { return u.addrChange(p, true) })
				changes = append(changes, u.change("removed %s from lo", p))
			}
		}
		if !u.have.equal(u.want) {
			// One transaction: the old table is replaced by the merged one.
			if err := u.writeTable(u.have != nil, u.rules); err != nil {
				return nil, err
			}
			if u.have == nil {
				undo = append(undo, u.deleteTable)
				changes = append(changes, u.change("created table inet %s with %d rules", TableName, len(u.rules)))
			} else {
				undo = append(undo, func() error { return u.restoreTable(u.haveChains, u.haveRules) })
				changes = append(changes, u.notes...)
				changes = append(changes, u.tableChanges...)
			}
		}
		if !newState.equal(u.st) {
			if err := writeState(stateDir, u.name, newState); err != nil {
				return nil, fmt.Errorf("%s: recording what was added: %w", u.where(), err)
			}
			undo = append(undo, func() error { return restoreStateFile(stateDir, u.name, u.oldState) })
			if u.have.equal(u.want) {
				// Only the record changed (a gone bridge without rules).
				changes = append(changes, u.notes...)
			}
		}
	}
	return changes, nil
}

func restoreStateFile(dir, netns string, old []byte) error {
	path := filepath.Join(dir, stateName(netns))
	if old == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return atomicfile.Write(path, old, 0o600)
}

// ---- down ----

func down(_ context.Context, names []string, stateDir string) ([]Change, error) {
	if len(names) == 0 {
		names = []string{""}
	}
	var changes []Change
	var errs []error
	for _, name := range names {
		c, err := downOne(name, stateDir)
		changes = append(changes, c...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return changes, errors.Join(errs...)
}

func downOne(name, stateDir string) ([]Change, error) {
	st, err := readState(stateDir, name)
	if err != nil {
		return nil, err
	}
	t, err := openTarget(name)
	if err != nil {
		if name != "" && !st.empty() && !errors.Is(err, ErrPermission) {
			// The namespace is gone, and with it what we added.
			if err := writeState(stateDir, name, &state{}); err != nil {
				return nil, err
			}
			return []Change{{Netns: name, What: "namespace is gone: forgot what was recorded for it"}}, nil
		}
		return nil, err
	}
	defer t.close()
	var changes []Change
	have, _, _, err := t.readTable()
	if err != nil {
		return nil, err
	}
	if have != nil {
		if err := t.deleteTable(); err != nil {
			return nil, permErr(fmt.Errorf("%s: deleting table inet %s: %w", t.where(), TableName, err))
		}
		changes = append(changes, t.change("deleted table inet %s", TableName))
	}
	present, err := t.loAddrs()
	if err != nil {
		return changes, err
	}
	var left []string
	for _, a := range st.Added {
		p, perr := netip.ParsePrefix(a)
		if perr != nil || !present[p] {
			continue
		}
		if err := t.addrChange(p, false); err != nil {
			left = append(left, a)
			_ = writeState(stateDir, name, &state{Netns: name, Added: left})
			return changes, err
		}
		changes = append(changes, t.change("removed %s from lo", p))
	}
	if err := writeState(stateDir, name, &state{}); err != nil {
		return changes, err
	}
	return changes, nil
}

// downBridges removes the rules of bridges in each namespace of names.
func downBridges(_ context.Context, names, bridges []string, stateDir string) ([]Change, error) {
	if len(names) == 0 {
		names = []string{""}
	}
	var changes []Change
	var errs []error
	for _, name := range names {
		c, err := downBridgesOne(name, bridges, stateDir)
		changes = append(changes, c...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return changes, errors.Join(errs...)
}

func downBridgesOne(name string, bridges []string, stateDir string) ([]Change, error) {
	st, err := readState(stateDir, name)
	if err != nil {
		return nil, err
	}
	t, err := openTarget(name)
	if err != nil {
		return nil, err
	}
	defer t.close()
	_, chains, rules, err := t.readTable()
	if err != nil {
		return nil, err
	}
	var changes []Change
	// The bridges' rules go in one transaction, with a chain they leave
	// empty (as up would make it); the others stay as they are.
	left := map[string]int{}
	for _, r := range rules {
		comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if !slices.ContainsFunc(bridges, func(b string) bool { return bridgeRule(comment, b) }) {
			left[r.Chain.Name]++
			continue
		}
		if err := t.nft.DelRule(r); err != nil {
			return nil, fmt.Errorf("%s: deleting rule %q: %w", t.where(), comment, err)
		}
		changes = append(changes, t.change("removed rule %s", strings.TrimPrefix(comment, commentPrefix)))
	}
	if len(changes) > 0 {
		for _, c := range chains {
			if left[c.Name] == 0 {
				t.nft.DelChain(c)
			}
		}
		if err := t.nft.Flush(); err != nil {
			return nil, permErr(fmt.Errorf("%s: removing the rules of %s from table inet %s: %w", t.where(), strings.Join(bridges, ", "), TableName, err))
		}
	}
	newState := *st
	newState.Bridges = slices.DeleteFunc(slices.Clone(st.Bridges), func(b string) bool { return slices.Contains(bridges, b) })
	if !newState.equal(st) {
		if err := writeState(stateDir, name, &newState); err != nil {
			if len(changes) > 0 {
				if rerr := t.restoreTable(chains, rules); rerr != nil {
					err = fmt.Errorf("%w; rolling back failed too: %v", err, rerr)
				}
			}
			return nil, fmt.Errorf("%s: recording what was removed: %w", t.where(), err)
		}
		for _, b := range st.Bridges {
			if slices.Contains(bridges, b) && !slices.ContainsFunc(changes, func(c Change) bool { return strings.Contains(c.What, fmt.Sprintf("iifname %q ", b)) }) {
				changes = append(changes, t.change("forgot bridge %s (it had no rules)", b))
			}
		}
	}
	return changes, nil
}

// DialContext dials address from inside the named network namespace ("" is
// the current one). The socket is created on an OS thread switched into the
// namespace; the connection then works from any goroutine.
func DialContext(ctx context.Context, ns, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := InNetns(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// InNetns runs fn on an OS thread switched into the named network namespace
// ("" runs it directly). Sockets fn creates belong to that namespace; fn must
// not rely on goroutines it starts running there.
func InNetns(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	h, err := netns.GetFromName(ns)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unknown network namespace %q", ns)
		}
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- permErr(fmt.Errorf("entering network namespace %q: %w", ns, err))
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			// The thread stays locked and dies with this goroutine.
			errc <- errors.Join(err, rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
