package config

import (
	"net/netip"
	"slices"

	"go.yaml.in/yaml/v3"
)

// MaxHops is the largest hop distance (and EC2's largest
// HttpPutResponseHopLimit).
const MaxHops = 64

// HopDistance is one item of hop_distances: requesters in CIDR are Hops
// hops away from the server, although the kernel sees them as direct (a
// container on a bridge DNAT'ed to a server on the same host). A token
// response goes to them only if the instance's hop_limit is at least Hops.
type HopDistance struct {
	CIDR netip.Prefix // masked; a single address is a /32 or /128
	Hops int          // 1–64
}

// hopDistances decodes hop_distances: a list of {cidr, hops}.
func (d *decoder) hopDistances(path string, line int, v *yaml.Node) []HopDistance {
	var out []HopDistance
	seen := map[netip.Prefix]string{}
	d.list(path, line, v, func(_ int, p string, l int, item *yaml.Node) {
		var h HopDistance
		var hasCIDR, hasHops, valid = false, false, true
		ok := d.mapping(p, l, item, schema{
			"cidr": func(p string, l int, v *yaml.Node) {
				s, ok := d.str(p, l, v)
				if !ok {
					valid = valid && isNull(resolve(v))
					return
				}
				pfx, err := netip.ParsePrefix(s)
				if err != nil {
					if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
						pfx, err = a.Prefix(a.BitLen())
					}
				}
				if err != nil {
					d.errorf(l, p, "must be an address or CIDR like 172.17.0.0/16, got %q", s)
					valid = false
					return
				}
				h.CIDR, hasCIDR = pfx.Masked(), true
			},
			"hops": func(p string, l int, v *yaml.Node) {
				n, ok := d.integer(p, l, v, 1, MaxHops)
				if !ok {
					valid = valid && isNull(resolve(v))
					return
				}
				h.Hops, hasHops = n, true
			},
		})
		if !ok || !valid {
			if !ok && isNull(resolve(item)) {
				d.errorf(l, p, "must be a mapping with cidr and hops, got null")
			}
			return
		}
		switch {
		case !hasCIDR:
			d.errorf(l, p+".cidr", "is required (the network of the requesters, e.g. 172.17.0.0/16)")
		case !hasHops:
			d.errorf(l, p+".hops", "is required (1 to %d; 2 for a container behind a bridge)", MaxHops)
		case seen[h.CIDR] != "":
			d.errorf(l, p+".cidr", "%s is already given in %s", h.CIDR, seen[h.CIDR])
		default:
			seen[h.CIDR] = p
			out = append(out, h)
		}
	})
	return slices.Clip(out)
}
