// Package libvirt turns a libvirt domain XML document (what libvirt passes to
// its hooks on standard input, or what `virsh dumpxml` prints) into an
// instance spec for imds.
//
// The instance is named after the domain, its ID is derived from the
// domain's UUID (so it survives renames, restarts and migrations), and its
// primary interface takes the MAC of the domain's interface on the chosen
// libvirt network, with MatchMAC set so that requests are recognised by it.
// Per-VM settings come from the domain's metadata:
//
//	<metadata>
//	  <imds:instance xmlns:imds="https://imds.dev/libvirt/1">
//	    <imds:role>web-role</imds:role>
//	    <imds:user-data>#cloud-config ...</imds:user-data>  (encoding="base64" for binary data)
//	    <imds:tag key="env">dev</imds:tag>                 (repeatable)
//	    <imds:instance-type>t3.small</imds:instance-type>
//	    <imds:region>eu-west-1</imds:region>
//	    <imds:availability-zone>eu-west-1b</imds:availability-zone>
//	    <imds:imdsv2>required</imds:imdsv2>
//	    <imds:public-key name="alice">ssh-ed25519 AAAA...</imds:public-key>  (repeatable)
//	    <imds:ip>192.168.122.10</imds:ip>                 (repeatable: source addresses)
//	    <imds:host>hv-1</imds:host>                       (the imds host that serves it; "" for every host)
//	  </imds:instance>
//	</metadata>
//
// The hook pins the instance to the imds host it runs on (PinTo), unless
// the block names a host.
//
// (`virsh metadata DOMAIN https://imds.dev/libvirt/1 --key imds --edit`
// edits the block.)
//
// The input is treated as hostile: it is limited to 1 MiB, 64 levels of
// nesting and 100,000 elements, and documents with a DTD are refused, so
// that entity expansion and external entities are impossible.
package libvirt

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/imdsdev/imds/internal/ec2"
)

// Namespace is the XML namespace of the imds metadata block.
const Namespace = "https://imds.dev/libvirt/1"

// Limits on the input.
const (
	MaxSize     = 1 << 20 // bytes
	MaxDepth    = 64      // levels of nesting
	MaxElements = 100_000
)

// Options select what to read from a domain.
type Options struct {
	Network string // libvirt network whose interface gives the MAC ("" = the first interface)
}

// Domain is a parsed domain: the spec for a new instance and what the
// domain sets, for updating an instance registered before.
type Domain struct {
	// Spec is a spec ready for registering: ec2.NewDefaultInstance with
	// the domain's name, ID, MAC and overrides.
	Spec *ec2.Instance
	// UUID is the domain's UUID, canonical (lower case, dashed).
	UUID string
	// Network is the libvirt network of the interface that gave the MAC
	// ("" when it is not on a libvirt network).
	Network string

	set fields
	// pinned: PinTo ran, and the update sets the host.
	pinned bool
}

// fields records which overrides the metadata block gives.
type fields struct {
	role, userData, instanceType, region, zone, imdsv2, keys, ips, host bool
	tags                                                                []ec2.Tag
}

// ParseDomain reads domain XML and returns an instance spec (not derived);
// see the package documentation.
func ParseDomain(r io.Reader, opt Options) (*ec2.Instance, error) {
	d, err := Parse(r, opt)
	if err != nil {
		return nil, err
	}
	return d.Spec, nil
}

// Parse reads domain XML like ParseDomain, and also returns what the domain
// sets so that Apply can update an existing spec.
func Parse(r io.Reader, opt Options) (*Domain, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	if len(data) > MaxSize {
		return nil, errors.New("domain XML larger than 1 MiB")
	}
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	return fromTree(root, opt)
}

// Update is the change the domain makes to an instance registered before:
// its ID and MAC (with MatchMAC) always, the overrides of the metadata
// block when they are given. Everything else is kept. Tags are set key by
// key; public keys and source addresses given in the block replace the
// lists.
func (d *Domain) Update() ec2.InstanceUpdate {
	s := d.Spec
	u := ec2.InstanceUpdate{ID: &s.ID, MAC: &s.Interfaces[0].MAC}
	if d.set.role {
		role := ""
		if s.Role != nil {
			role = s.Role.Name
		}
		u.Role = &role
	}
	if d.set.userData {
		u.UserData = ec2.Ptr(append([]byte{}, s.UserData...))
	}
	if d.set.instanceType {
		u.InstanceType = &s.InstanceType
	}
	if d.set.region {
		u.Region = &s.Region
	}
	if d.set.zone {
		u.AvailabilityZone = &s.AvailabilityZone
	}
	if d.set.imdsv2 {
		u.HTTPTokens = &s.Metadata.HTTPTokens
	}
	if d.set.keys {
		u.PublicKeys = ec2.Ptr(append([]ec2.PublicKey{}, s.PublicKeys...))
	}
	if d.set.ips {
		u.SourceAddrs = ec2.Ptr(append([]string{}, s.SourceAddrs...))
	}
	if d.set.host || d.pinned {
		u.Host = &s.Host
	}
	for _, t := range d.set.tags {
		u.Tags = append(u.Tags, ec2.TagEdit{Key: t.Key, Value: t.Value})
	}
	return u
}

// PinTo pins the instance to host, the imds host the domain runs on (so a
// migrated VM follows its hypervisor), unless the metadata block names a
// host, which wins. An empty host pins nothing.
func (d *Domain) PinTo(host string) {
	if d.set.host || host == "" {
		return
	}
	d.Spec.Host, d.pinned = host, true
}

// Apply updates spec, an instance registered before, as Update says, and
// names it after the domain.
func (d *Domain) Apply(spec *ec2.Instance) {
	spec.Name = d.Spec.Name
	d.Update().Apply(spec)
}

// InstanceID returns the instance ID of the domain with the given UUID:
// "i-0" and 16 hex digits of the SHA-256 of the canonical UUID.
func InstanceID(uuid string) (string, error) {
	c, ok := canonicalUUID(uuid)
	if !ok {
		return "", fmt.Errorf("%s is not a UUID", quote(uuid))
	}
	sum := sha256.Sum256([]byte(c))
	return "i-0" + hex.EncodeToString(sum[:8]), nil
}

// canonicalUUID returns the UUID in lower case with dashes (libvirt also
// accepts it without dashes).
func canonicalUUID(s string) (string, bool) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
	if len(h) != 32 {
		return "", false
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", false
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], true
}

// node is an element of the document.
type node struct {
	name     xml.Name
	attrs    []xml.Attr
	text     strings.Builder
	children []*node
	line     int
}

func (n *node) attr(name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// child returns the first child in no namespace with the given name.
func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name.Space == "" && c.name.Local == name {
			return c
		}
	}
	return nil
}

// parseTree checks the document against the limits and returns its root
// element.
func parseTree(data []byte) (*node, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.Entity = map[string]string{}
	line := func() int { l, _ := dec.InputPos(); return l }
	var (
		root     *node
		stack    []*node
		elements int
	)
	for {
		at := line() // where the next token starts: the previous one ends there
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				if se.Msg == "unexpected EOF" {
					return nil, fmt.Errorf("domain XML: line %d: truncated document (unexpected end)", se.Line)
				}
				return nil, fmt.Errorf("domain XML: line %d: %s", se.Line, oneLine(se.Msg))
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("domain XML: line %d: truncated document (unexpected end)", line())
			}
			return nil, fmt.Errorf("domain XML: line %d: %s", line(), oneLine(err.Error()))
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, fmt.Errorf("domain XML: line %d: DTDs are not allowed", at)
		case xml.StartElement:
			elements++
			if elements > MaxElements {
				return nil, fmt.Errorf("domain XML: line %d: more than %d elements", at, MaxElements)
			}
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("domain XML: line %d: nested deeper than %d elements", at, MaxDepth)
			}
			n := &node{name: t.Name, attrs: t.Copy().Attr, line: at}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("domain XML: line %d: more than one root element", n.line)
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1] // Strict decoding matches end tags
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("domain XML: line %d: text outside the root element (not XML?)", line())
			}
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("domain XML: line %d: truncated document (<%s> not closed)", line(), stack[len(stack)-1].name.Local)
	}
	if root == nil {
		return nil, errors.New("domain XML: empty document (no <domain> element)")
	}
	return root, nil
}

// fromTree reads the domain from the document.
func fromTree(root *node, opt Options) (*Domain, error) {
	if root.name.Space != "" || root.name.Local != "domain" {
		return nil, fmt.Errorf("domain XML: line %d: the root element is <%s>, not <domain>", root.line, short(root.name.Local))
	}
	spec := ec2.NewDefaultInstance()
	d := &Domain{Spec: spec}

	name := root.child("name")
	if name == nil || strings.TrimSpace(name.text.String()) == "" {
		return nil, errors.New("domain XML: missing <name>")
	}
	spec.Name = strings.TrimSpace(name.text.String())
	if !utf8.ValidString(spec.Name) || len(spec.Name) > 253 || strings.ContainsAny(spec.Name, "/ \t\r\n") {
		return nil, fmt.Errorf("domain XML: line %d: <name> %s cannot name an instance (1-253 characters without spaces or slashes)", name.line, quote(spec.Name))
	}

	uuid := root.child("uuid")
	if uuid == nil || strings.TrimSpace(uuid.text.String()) == "" {
		return nil, errors.New("domain XML: missing <uuid>")
	}
	c, ok := canonicalUUID(uuid.text.String())
	if !ok {
		return nil, fmt.Errorf("domain XML: line %d: <uuid> %s is not a UUID", uuid.line, quote(uuid.text.String()))
	}
	d.UUID = c
	spec.ID, _ = InstanceID(c)

	mac, network, err := pickInterface(root, opt)
	if err != nil {
		return nil, err
	}
	spec.Interfaces = []ec2.NetworkInterface{{MAC: mac}}
	spec.MatchMAC = true
	d.Network = network

	if err := readOverrides(root, d); err != nil {
		return nil, err
	}
	return d, nil
}

// pickInterface returns the MAC and network of the first interface on
// opt.Network, or of the first interface when opt.Network is empty.
func pickInterface(root *node, opt Options) (mac, network string, err error) {
	var seen []string
	found := false
	for _, devices := range root.children {
		if devices.name.Space != "" || devices.name.Local != "devices" {
			continue
		}
		for _, iface := range devices.children {
			if iface.name.Space != "" || iface.name.Local != "interface" {
				continue
			}
			found = true
			net := ""
			if src := iface.child("source"); src != nil {
				net, _ = src.attr("network")
			}
			if opt.Network != "" && net != opt.Network {
				if net == "" {
					typ, _ := iface.attr("type")
					net = "type " + typ
				}
				seen = append(seen, net)
				continue
			}
			m := iface.child("mac")
			if m == nil {
				return "", "", fmt.Errorf("domain XML: line %d: <interface> has no <mac address=...>", iface.line)
			}
			addr, _ := m.attr("address")
			hw, perr := netParseMAC(addr)
			if perr != nil {
				return "", "", fmt.Errorf("domain XML: line %d: <mac address=%s> is not a MAC address like 52:54:00:12:34:56", m.line, quote(addr))
			}
			return hw, net, nil
		}
	}
	if !found {
		return "", "", errors.New("domain XML: missing <interface> (the domain has no network interface)")
	}
	return "", "", fmt.Errorf("domain XML: no <interface> on libvirt network %s (interfaces: %s)", quote(opt.Network), oneLine(short(strings.Join(seen, ", "))))
}

// netParseMAC accepts a 6-byte MAC and returns it lower case with colons.
func netParseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", errors.New("bad MAC")
	}
	return hw.String(), nil
}

// readOverrides reads the imds metadata block, if any.
func readOverrides(root *node, d *Domain) error {
	var block *node
	for _, md := range root.children {
		if md.name.Space != "" || md.name.Local != "metadata" {
			continue
		}
		for _, c := range md.children {
			if c.name.Space == Namespace && c.name.Local == "instance" {
				if block != nil {
					return fmt.Errorf("domain XML: line %d: more than one <instance> block in namespace %s", c.line, Namespace)
				}
				block = c
			}
		}
	}
	if block == nil {
		return nil
	}
	spec := d.Spec
	once := map[string]int{}
	tagKeys := map[string]bool{}
	for _, c := range block.children {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("domain XML: line %d: imds <%s>: %s", c.line, c.name.Local, fmt.Sprintf(format, args...))
		}
		if c.name.Space != Namespace {
			return bad("element outside the namespace %s", Namespace)
		}
		if len(c.children) > 0 {
			return bad("must hold text, not elements")
		}
		switch c.name.Local {
		case "tag", "public-key", "ip":
		default:
			if l, dup := once[c.name.Local]; dup {
				return bad("given twice (first on line %d)", l)
			}
			once[c.name.Local] = c.line
		}
		raw := c.text.String()
		text := strings.TrimSpace(raw)
		switch c.name.Local {
		case "role":
			d.set.role = true
			spec.Role = nil
			if text != "" {
				if len(text) > 64 || strings.ContainsAny(text, "/ \t\r\n") {
					return bad("%s is not a role name", quote(text))
				}
				spec.Role = &ec2.Role{Name: text}
			}
		case "user-data":
			d.set.userData = true
			data := []byte(raw)
			switch enc, _ := c.attr("encoding"); enc {
			case "", "text":
			case "base64":
				b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(raw), ""))
				if err != nil {
					return bad("not valid base64: %s", oneLine(err.Error()))
				}
				data = b
			default:
				return bad("encoding must be base64 or text, got %s", quote(enc))
			}
			spec.UserData = nil
			if len(data) > 0 {
				spec.UserData = data
			}
		case "tag":
			key, ok := c.attr("key")
			if !ok || key == "" {
				return bad("needs a non-empty key attribute")
			}
			if utf8.RuneCountInString(key) > 128 || strings.ContainsAny(key, "\r\n") {
				return bad("key %s must be 1-128 characters on one line", quote(key))
			}
			if tagKeys[key] {
				return bad("duplicate key %s", quote(key))
			}
			tagKeys[key] = true
			if utf8.RuneCountInString(raw) > 256 {
				return bad("value of %s is longer than 256 characters", quote(key))
			}
			spec.Tags = append(spec.Tags, ec2.Tag{Key: key, Value: raw})
			d.set.tags = append(d.set.tags, ec2.Tag{Key: key, Value: raw})
		case "instance-type":
			if text == "" || !strings.Contains(text, ".") || strings.ContainsAny(text, " \t\r\n/") {
				return bad("must look like t3.small, got %s", quote(text))
			}
			d.set.instanceType = true
			spec.InstanceType = text
		case "region":
			if text == "" || strings.ContainsAny(text, " \t\r\n/") {
				return bad("must look like eu-west-1, got %s", quote(text))
			}
			d.set.region = true
			spec.Region = text
		case "availability-zone":
			if text == "" || strings.ContainsAny(text, " \t\r\n/") {
				return bad("must look like eu-west-1a, got %s", quote(text))
			}
			d.set.zone = true
			spec.AvailabilityZone = text
		case "imdsv2":
			if text != ec2.TokensOptional && text != ec2.TokensRequired {
				return bad("must be optional or required, got %s", quote(text))
			}
			d.set.imdsv2 = true
			spec.Metadata.HTTPTokens = text
		case "public-key":
			name, _ := c.attr("name")
			if name == "" || strings.ContainsAny(name, "=/\r\n") {
				return bad("needs a name attribute without '=', '/' or newlines, got %s", quote(name))
			}
			if !strings.HasPrefix(text, "ssh-") && !strings.HasPrefix(text, "ecdsa-") && !strings.HasPrefix(text, "sk-") || strings.ContainsAny(text, "\r\n") {
				return bad("%s must be one OpenSSH public key line (ssh-ed25519 AAAA...)", quote(name))
			}
			d.set.keys = true
			spec.PublicKeys = append(spec.PublicKeys, ec2.PublicKey{Name: name, Key: text})
		case "ip":
			a, err := netip.ParseAddr(text)
			if err != nil || a.Zone() != "" {
				return bad("%s is not an IP address", quote(text))
			}
			d.set.ips = true
			spec.SourceAddrs = append(spec.SourceAddrs, a.String())
		case "host":
			if text != "" {
				if err := ec2.CheckHostName(text); err != nil {
					return bad("%s", err)
				}
			}
			d.set.host = true
			spec.Host = text
		default:
			return bad("unknown element (known: role, user-data, tag, instance-type, region, availability-zone, imdsv2, public-key, ip, host)")
		}
	}
	if d.set.region && d.set.zone && !strings.HasPrefix(spec.AvailabilityZone, spec.Region) {
		return fmt.Errorf("domain XML: line %d: imds availability-zone %s is not in region %s", block.line, quote(spec.AvailabilityZone), quote(spec.Region))
	}
	return nil
}

// quote quotes s for a message, shortened.
func quote(s string) string { return fmt.Sprintf("%q", short(s)) }

// short cuts s to 64 characters for a message.
func short(s string) string {
	if utf8.RuneCountInString(s) <= 64 {
		return s
	}
	r := []rune(s)
	return string(r[:64]) + "..."
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
