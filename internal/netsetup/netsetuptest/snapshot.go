// Package netsetuptest helps tests of imds net up|down show that a network
// namespace is left as it was: it prints what `up` may change there (the
// nftables ruleset, addresses and routes) without the state the kernel
// changes on its own.
package netsetuptest

import (
	"context"
	"encoding/json"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Snapshot returns the nftables ruleset, the addresses and the main routes
// of network namespace ns, in a form that two calls return identically
// unless something changed them. Left out, because the kernel changes them
// by itself whenever it gets round to it: link-local IPv6 addresses (added
// when a link comes up) and their routes, address flags and lifetimes
// (tentative until duplicate address detection ends), and "linkdown".
func Snapshot(t testing.TB, ns string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset"))
	b.WriteString("----\n")
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(run(t, "ip", "-n", ns, "-j", "addr")), &links); err != nil {
		t.Fatalf("ip -j addr in %s: %v", ns, err)
	}
	var addrs []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil && ip.Is6() && ip.IsLinkLocalUnicast() {
				continue
			}
			addrs = append(addrs, l.IfName+" "+a.Family+" "+a.Local+"/"+strconv.Itoa(a.PrefixLen)+" scope "+a.Scope)
		}
	}
	sort.Strings(addrs)
	b.WriteString(strings.Join(addrs, "\n"))
	b.WriteString("\n----\n")
	for _, family := range []string{"-4", "-6"} {
		for _, line := range strings.Split(run(t, "ip", "-n", ns, family, "route", "show", "table", "main"), "\n") {
			if line == "" || strings.HasPrefix(line, "fe80::") {
				continue
			}
			b.WriteString(strings.ReplaceAll(line, " linkdown", "") + "\n")
		}
	}
	return b.String()
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
