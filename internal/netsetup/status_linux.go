//go:build linux

package netsetup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// probeTimeout bounds each path's probe (a token PUT and a GET).
const probeTimeout = 2 * time.Second

func status(ctx context.Context, opts StatusOptions) (*Report, error) {
	t, err := openTarget(opts.Netns)
	if err != nil {
		return nil, err
	}
	defer t.close()
	r := &Report{Netns: opts.Netns, Port: opts.Port}
	st, err := readState(opts.StateDir, opts.Netns)
	if err != nil {
		return nil, err
	}
	have, _, _, err := t.readTable()
	if err != nil {
		return nil, err
	}
	recPort, recBridges, recV6 := recordedSetup(st, have)
	switch {
	case opts.Port != 0:
	case recPort != 0:
		// What up set up, so that a custom --port needs no repeating.
		r.Port, r.Recorded = recPort, true
	default:
		r.Port = DefaultPort
	}
	if st.Port != 0 || len(recBridges) > 0 {
		r.Bridges = recBridges
	}
	port := r.Port
	present, err := t.loAddrs()
	if err != nil {
		return nil, err
	}
	for _, m := range []netip.Addr{MetadataIPv4, MetadataIPv6} {
		for p := range present {
			if p.Addr() == m {
				r.Addresses = append(r.Addresses, p)
			}
		}
	}
	r.Table = have != nil
	for _, cs := range chainSpecs {
		for _, c := range have[cs.name] {
			r.Rules = append(r.Rules, cs.name+": "+strings.TrimPrefix(c, commentPrefix))
		}
	}
	metas := []netip.Addr{MetadataIPv4}
	if recV6 || hasAddr(present, MetadataIPv6) {
		metas = append(metas, MetadataIPv6)
	}

	broken := false
	fail := func(format string, args ...any) {
		broken = true
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf(format, args...))
	}
	note := func(format string, args ...any) {
		r.Diagnosis = append(r.Diagnosis, fmt.Sprintf(format, args...))
	}

	// Static checks: what up set up must be in place.
	for _, m := range metas {
		if !hasAddr(present, m) {
			fail("address %s missing on lo: run imds net up", m)
		}
		if !slices.Contains(have["output"], redirectComment(m, port)) {
			if m.Is4() {
				fail("no redirect rule for port %d%s", port, r.portSource())
			} else {
				fail("no IPv6 redirect rule for port %d%s", port, r.portSource())
			}
		}
	}
	if t.lo.Attrs().Flags&net.FlagUp == 0 {
		// Every local connection goes through lo: probing would only time out.
		if t.name == "" {
			fail("lo is down on the host: nothing reaches the metadata address; fix: ip link set lo up")
		} else {
			fail("lo is down in netns %s: nothing there reaches the metadata address; fix: ip -n %s link set lo up", t.name, t.name)
		}
		return r, nil
	}

	// The host's (or namespace's) own processes, through lo.
	for _, m := range metas {
		if !hasAddr(present, m) {
			// The request would leave the machine (to a real metadata
			// service, if any): no probe.
			continue
		}
		lo := netip.MustParseAddr("127.0.0.1")
		if m.Is6() {
			lo = netip.IPv6Loopback()
		}
		to := netip.AddrPortFrom(lo, uint16(port))
		pa := Path{Name: "lo " + netip.AddrPortFrom(m, 80).String(), Target: netip.AddrPortFrom(m, 80).String()}
		res := probe(ctx, opts.Netns, pa.Target, m, opts.ProbePath)
		hasRule := slices.Contains(have["output"], redirectComment(m, port))
		switch {
		case res.err != nil && errors.Is(res.err, syscall.ECONNREFUSED) && hasRule:
			pa.Finding = fmt.Sprintf("nothing listening on port %d%s at %s, where the redirect leads", port, r.portSource(), to)
			pa.Fix = fmt.Sprintf("run imds serve with --listen %s", to)
			if m.Is6() {
				pa.Fix += " (it listens on IPv4 only?)"
			}
		default:
			interpret(&pa, res, "this host", port)
			if pa.OK && !hasRule {
				pa.OK = false
				pa.Finding += ", but not through a redirect to port " + strconv.Itoa(port) + r.portSource()
				pa.Fix = "run imds net up"
			}
		}
		if m.Is4() && pa.InstanceID != "" {
			r.InstanceID = pa.InstanceID
		}
		r.add(pa, fail, note)
	}

	// Containers and VMs behind each bridge reach bridgeIP:port after the
	// DNAT; the probe asks that address as they would (Host: the metadata
	// address).
	for _, br := range r.Bridges {
		for _, m := range metas {
			cur, err := t.bridgeAddr(br, m.Is6())
			if errors.Is(err, errNoBridge) {
				note("bridge %s no longer exists: its rules are stale (imds net up drops them, or imds net down --bridge %s)", br, br)
				break
			}
			fam := "IPv4"
			if m.Is6() {
				fam = "IPv6"
			}
			i := slices.IndexFunc(have["prerouting"], func(c string) bool {
				return bridgeRule(c, br) && strings.Contains(c, " "+ipWord(m)+" daddr ")
			})
			if i < 0 || !strings.HasSuffix(have["prerouting"][i], ":"+strconv.Itoa(port)) {
				fail("no %s DNAT rule for bridge %s to port %d%s: run imds net up again", fam, br, port, r.portSource())
				continue
			}
			c := have["prerouting"][i]
			to, perr := netip.ParseAddrPort(c[strings.LastIndexByte(c, ' ')+1:])
			if perr != nil {
				fail("bridge %s: unreadable rule %q", br, c)
				continue
			}
			if err != nil {
				fail("bridge %s: %v", br, strings.TrimPrefix(err.Error(), t.where()+": "))
				continue
			}
			if to.Addr() != cur {
				fail("bridge %s: the DNAT rule leads to %s, but the bridge's address is now %s: run imds net up again", br, to.Addr(), cur)
				continue
			}
			pa := Path{Name: fmt.Sprintf("bridge %s %s", br, netip.AddrPortFrom(m, 80)), Target: to.String()}
			res := probe(ctx, opts.Netns, to.String(), m, opts.ProbePath)
			if res.err != nil && errors.Is(res.err, syscall.ECONNREFUSED) {
				wildcard := "0.0.0.0"
				if m.Is6() {
					wildcard = "[::]"
				}
				pa.Finding = fmt.Sprintf("nothing listening on %s, where the DNAT of bridge %s leads: containers and VMs behind %s get no answer", to, br, br)
				pa.Fix = fmt.Sprintf("run imds serve with --listen %s (or --listen %s:%d)", to, wildcard, port)
			} else {
				interpret(&pa, res, "the bridge's own address", port)
			}
			r.add(pa, fail, note)
		}
	}

	if !broken {
		r.OK = true
		if r.InstanceID != "" {
			note("OK: metadata reachable (instance %s)", r.InstanceID)
		} else {
			note("OK: every path reaches imds")
		}
	}
	return r, nil
}

// add records a probed path as a diagnosis line.
func (r *Report) add(p Path, fail, note func(string, ...any)) {
	r.Paths = append(r.Paths, p)
	line := p.Name + ": " + p.Finding
	if p.Fix != "" {
		line += "; " + p.Fix
	}
	if p.OK {
		note("%s", line)
	} else {
		fail("%s", line)
	}
}

// probeResult is what one probe got.
type probeResult struct {
	err    error
	status int
	server string // the Server header
	body   string
	source netip.Addr // the probe's own source address
}

// interpret fills p from res; who names the requester for a 404.
func interpret(p *Path, res probeResult, who string, port int) {
	switch {
	case res.err != nil && errors.Is(res.err, context.DeadlineExceeded) || isTimeout(res.err):
		p.Finding = fmt.Sprintf("no answer from %s within %s", p.Target, probeTimeout)
		p.Fix = "check the firewall (input chain) and that imds serve runs"
	case res.err != nil && errors.Is(res.err, syscall.ECONNREFUSED):
		p.Finding = fmt.Sprintf("connection to %s refused", p.Target)
		p.Fix = "run imds net up"
	case res.err != nil:
		p.Finding = "probe failed: " + res.err.Error()
	case res.status == http.StatusOK && strings.HasPrefix(res.body, "i-"):
		p.OK = true
		p.InstanceID = res.body
		p.Finding = "OK (instance " + res.body + ")"
	case res.server == "EC2ws" && res.status == http.StatusNotFound:
		// imds answered: the path works, the requester is not an instance.
		p.OK = true
		p.Finding = fmt.Sprintf("reachable: imds answered 404 because %s, the probe's source (%s), is not an instance", res.source, who)
		p.Fix = fmt.Sprintf("to give it one: imds instance add NAME --ip %s", res.source)
	case res.server == "EC2ws":
		p.Finding = fmt.Sprintf("imds answered status %d: %q", res.status, truncate(res.body, 80))
	default:
		p.Finding = fmt.Sprintf("status %d, body %q (not an instance ID; Server %q is not imds)", res.status, truncate(res.body, 80), res.server)
		p.Fix = fmt.Sprintf("is something else listening on port %d?", port)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// probe asks address (host:port) from inside the namespace as an SDK
// would: a token PUT, then a GET of path with the token if it got one,
// with the metadata address meta as Host.
func probe(ctx context.Context, ns, address string, meta netip.Addr, path string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var res probeResult
	tr := &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := DialContext(ctx, ns, network, address)
			if err == nil {
				if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
					res.source = ap.Addr().Unmap()
				}
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	host := meta.String()
	if meta.Is6() {
		host = "[" + host + "]"
	}
	do := func(method, p string, hdr map[string]string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+address+p, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp, b, err
	}
	resp, body, err := do(http.MethodPut, "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if err != nil {
		res.err = err
		return res
	}
	hdr := map[string]string{}
	if resp.StatusCode == http.StatusOK {
		hdr["X-aws-ec2-metadata-token"] = strings.TrimSpace(string(body))
	}
	resp, body, err = do(http.MethodGet, path, hdr)
	if err != nil {
		res.err = err
		return res
	}
	res.status, res.server, res.body = resp.StatusCode, resp.Header.Get("Server"), strings.TrimSpace(string(body))
	return res
}
