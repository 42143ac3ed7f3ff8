package imds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/creds/fake"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/identity"
	"github.com/imdsdev/imds/internal/imds"
	"github.com/imdsdev/imds/internal/token"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: the server's fake clock; golden files hold it

// stubSigner returns fixed signatures so golden files stay stable; the real
// signer is verified with openssl in internal/identity and end to end in cmd/imds.
type stubSigner struct{}

func (stubSigner) Sign(doc []byte) (identity.Signatures, error) {
	return identity.Signatures{Signature: "SIGNATURE", PKCS7: "PKCS7", RSA2048: "RSA2048"}, nil
}

type fixture struct {
	srv   *imds.Server
	clock *clock
	creds *fake.Provider
	url   string
	inst  *ec2.Instance
}

// prepareFixture builds a server for inst, not yet serving.
func prepareFixture(t testing.TB, inst *ec2.Instance) *fixture {
	t.Helper()
	clk := &clock{t: t0}
	rnd := rand.NewChaCha8([32]byte{1, 2, 3})
	var mu sync.Mutex
	reader := readerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return rnd.Read(p) })
	creds := fake.New(reader)
	creds.Now = clk.Now
	tokens, err := token.NewIssuer(reader)
	if err != nil {
		t.Fatal(err)
	}
	tokens.Now = clk.Now
	srv := imds.NewServer()
	srv.Instances = ec2.SingleInstance{Instance: inst}
	srv.Credentials = creds
	srv.Identity = creds
	srv.Signer = stubSigner{}
	srv.Tokens = tokens
	srv.Now = clk.Now
	return &fixture{srv: srv, clock: clk, creds: creds, inst: inst}
}

// newFixture serves inst on a real loopback listener (fasthttp, as imds
// serve does) with a deterministic clock and randomness, so that tokens
// and credentials are reproducible.
func newFixture(t testing.TB, inst *ec2.Instance) *fixture {
	t.Helper()
	fx := prepareFixture(t, inst)
	fx.srv.Listen = []string{"127.0.0.1:0"}
	if err := fx.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.srv.Close(ctx)
	})
	fx.url = fx.srv.URL()
	return fx
}

// newHandlerFixture serves inst through Handler (net/http), the way
// embedding programs serve it.
func newHandlerFixture(t testing.TB, inst *ec2.Instance) *fixture {
	t.Helper()
	fx := prepareFixture(t, inst)
	h, err := fx.srv.Handler()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	fx.url = ts.URL
	return fx
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// richInstance has every optional category set, so the golden tree covers
// all of them.
func richInstance() *ec2.Instance {
	inst := &ec2.Instance{
		Name:             "web-1",
		Region:           "eu-west-1",
		AvailabilityZone: "eu-west-1b",
		InstanceType:     "c6i.xlarge",
		AncestorAMIIDs:   []string{"ami-0aaaaaaaaaaaaaaaa"},
		KernelID:         "aki-0123456789abcdef0",
		RamdiskID:        "ari-0123456789abcdef0",
		ProductCodes:     []string{"1abc2defghijklm3nopqrs4tu"},
		BillingProducts:  []string{"bp-6ba54002"},
		Monitoring:       true,
		AutoscalingState: "InService",
		Placement:        ec2.Placement{GroupName: "pg-1", PartitionNumber: 2, HostID: "h-0123456789abcdef0"},
		Interfaces: []ec2.NetworkInterface{
			{IPv6s: []string{"2001:db8::10"}, SubnetIPv6CIDRs: []string{"2001:db8::/64"}, VPCIPv6CIDRs: []string{"2001:db8::/56"},
				SecurityGroups: []ec2.SecurityGroup{{Name: "web"}, {Name: "ssh"}}},
			{DeviceNumber: 1, PublicIPv4s: []string{}},
		},
		BlockDevices: []ec2.BlockDevice{{Name: "ami", Device: "/dev/xvda"}, {Name: "root", Device: "/dev/xvda"}, {Name: "ebs1", Device: "sdb"}, {Name: "ephemeral0", Device: "sdc"}},
		PublicKeys: []ec2.PublicKey{
			{Name: "alice", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGolden+alice alice@example"},
			{Name: "bob", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGolden+bob bob@example"},
		},
		Tags:     []ec2.Tag{{Key: "Name", Value: "web-1"}, {Key: "env", Value: "dev"}, {Key: "team:owner", Value: "platform"}},
		UserData: []byte("#cloud-config\nhostname: web-1\n"),
		Role:     &ec2.Role{Name: "web-role"},
		Metadata: ec2.MetadataOptions{TagsInMetadata: true},
	}
	ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("golden"), Launch: t0.Add(-time.Hour)})
	return inst
}

func defaultInstance() *ec2.Instance {
	inst := ec2.NewDefaultInstance()
	ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("golden"), Launch: t0.Add(-time.Hour)})
	return inst
}

func (f *fixture) do(t testing.TB, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func (f *fixture) token(t testing.TB, ttl string) string {
	t.Helper()
	resp, body := f.do(t, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", ttl)
	if resp.StatusCode != 200 {
		t.Fatalf("token PUT status=%d, want 200", resp.StatusCode)
	}
	return body
}

// render prints a response the way golden files store it.
func render(method, path string, resp *http.Response, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=== %s %s\n%d", method, path, resp.StatusCode)
	for _, h := range []string{"Content-Type", "Allow", "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(&b, " %s=%s", h, v)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", body)
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// crawl walks the tree below prefix through HTTP the way cloud-init and
// facter do (directories end in "/", public-keys entries "0=name" become "0/")
// and renders every response.
func (f *fixture) crawl(t *testing.T, prefix string, hdr ...string) (string, []string) {
	t.Helper()
	var out strings.Builder
	var paths []string
	var walk func(path string)
	walk = func(path string) {
		resp, body := f.do(t, "GET", path, hdr...)
		out.WriteString(render("GET", path, resp, body))
		paths = append(paths, path)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: status %d, want 200 for a listed path", path, resp.StatusCode)
			return
		}
		if !strings.HasSuffix(path, "/") || strings.HasSuffix(path, "/user-data/") {
			return
		}
		if body == "" {
			t.Errorf("GET %s: empty listing", path)
		}
		for _, e := range strings.Split(body, "\n") {
			if strings.Count(path, "/") == 2 && e != "user-data" {
				e += "/" // the version root lists dynamic and meta-data without a slash
			}
			if name, _, ok := strings.Cut(e, "="); ok && strings.HasSuffix(path, "/public-keys/") {
				e = name + "/"
			}
			walk(path + e)
		}
	}
	walk(prefix)
	return out.String(), paths
}

func TestTreeGolden(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inst   func() *ec2.Instance
		prefix string
		v2     bool
	}{
		{"default-latest-v1.golden", defaultInstance, "/latest/", false},
		{"rich-latest-v1.golden", richInstance, "/latest/", false},
		{"rich-latest-v2.golden", richInstance, "/latest/", true},
		{"rich-2021-03-23-v2.golden", richInstance, "/2021-03-23/", true},
		{"rich-2016-09-02-v1.golden", richInstance, "/2016-09-02/", false},
		{"rich-2009-04-04-v1.golden", richInstance, "/2009-04-04/", false},
		{"rich-1.0-v1.golden", richInstance, "/1.0/", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inst := tt.inst()
			if tt.v2 {
				inst.Metadata.HTTPTokens = ec2.TokensRequired
			}
			f := newFixture(t, inst)
			var hdr []string
			if tt.v2 {
				hdr = []string{"X-aws-ec2-metadata-token", f.token(t, "21600")}
			}
			got, paths := f.crawl(t, tt.prefix, hdr...)
			checkGolden(t, tt.name, got)
			if tt.prefix == "/latest/" {
				// Every directory also answers without its trailing slash, and every
				// leaf with one, with the same body.
				for _, p := range paths {
					alt := strings.TrimSuffix(p, "/")
					if alt == p {
						alt = p + "/"
					}
					r1, b1 := f.do(t, "GET", p, hdr...)
					r2, b2 := f.do(t, "GET", alt, hdr...)
					if r1.StatusCode != r2.StatusCode || b1 != b2 {
						t.Errorf("GET %s = %d %q but GET %s = %d %q", p, r1.StatusCode, b1, alt, r2.StatusCode, b2)
					}
				}
			}
		})
	}
}

// TestVersionsFilterCategories checks that an older version prefix hides the
// categories released after it, and that every listed version serves a tree.
func TestVersionsFilterCategories(t *testing.T) {
	f := newFixture(t, richInstance())
	_, body := f.do(t, "GET", "/")
	versions := strings.Split(body, "\n")
	if versions[len(versions)-1] != "latest" {
		t.Fatalf("last version=%q, want latest", versions[len(versions)-1])
	}
	for _, v := range versions {
		resp, _ := f.do(t, "GET", "/"+v+"/meta-data/instance-id")
		if resp.StatusCode != 200 {
			t.Errorf("GET /%s/meta-data/instance-id: status %d, want 200", v, resp.StatusCode)
		}
	}
	for _, tt := range []struct {
		version, path string
		want          int
	}{
		{"2009-04-04", "meta-data/iam/info", 404},
		{"2012-01-12", "meta-data/iam/info", 200},
		{"2021-01-03", "meta-data/tags/instance/Name", 404},
		{"2021-03-23", "meta-data/tags/instance/Name", 200},
		{"2016-09-02", "meta-data/placement/region", 404},
		{"2016-09-02", "meta-data/network/interfaces/macs/", 200},
		{"2008-09-01", "dynamic/instance-identity/document", 404},
		{"2009-04-04", "dynamic/instance-identity/document", 200},
		{"2099-01-01", "meta-data/instance-id", 404},
		{"LATEST", "meta-data/instance-id", 404},
	} {
		resp, _ := f.do(t, "GET", "/"+tt.version+"/"+tt.path)
		if resp.StatusCode != tt.want {
			t.Errorf("GET /%s/%s: status=%d, want %d", tt.version, tt.path, resp.StatusCode, tt.want)
		}
	}
}

func TestErrorsGolden(t *testing.T) {
	inst := richInstance()
	f := newFixture(t, inst)
	tok := f.token(t, "60")
	var out strings.Builder
	for _, c := range []struct {
		method, path string
		hdr          []string
	}{
		{"GET", "/latest/meta-data/nope", nil},
		{"GET", "/latest/meta-data/id", nil}, // a prefix of instance-id is not instance-id
		{"GET", "/latest/meta-data/instance-id/extra", nil},
		{"GET", "/latest/meta-data/iam/security-credentials/other-role", nil},
		{"GET", "/latest/meta-data/spot/instance-action", nil},
		{"GET", "/latest/meta-data/../user-data", nil},
		{"GET", "/nope/meta-data/", nil},
		{"POST", "/latest/meta-data/", nil},
		{"DELETE", "/latest/meta-data/instance-id", nil},
		{"GET", "/latest/api/token", nil},
		{"POST", "/latest/api/token", nil},
		{"OPTIONS", "/latest/api/token", nil},
		{"PUT", "/latest/api/token", nil},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "0"}},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "21601"}},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "-5"}},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "1.5"}},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "abc"}},
		{"PUT", "/latest/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60", "X-Forwarded-For", "10.0.0.1"}},
		{"PUT", "/2021-03-23/api/token", []string{"X-aws-ec2-metadata-token-ttl-seconds", "60"}},
		{"GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", "not-a-token"}},
		{"GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", tok[:len(tok)-4] + "AAA="}},
		{"GET", "/latest/meta-data/instance-id", []string{"X-aws-ec2-metadata-token", ""}},
		{"GET", "/latest/meta-data/instance-id", []string{"Origin", "http://evil.example"}},
		{"GET", "/latest/meta-data/instance-id", []string{"Sec-Fetch-Site", "same-origin"}},
		{"GET", "/latest/user-data", []string{"X-aws-ec2-metadata-token", tok}},
	} {
		resp, body := f.do(t, c.method, c.path, c.hdr...)
		if resp.Header.Get("Server") != "EC2ws" {
			t.Errorf("%s %s: Server=%q, want EC2ws", c.method, c.path, resp.Header.Get("Server"))
		}
		out.WriteString(render(c.method, c.path+" "+strings.Join(c.hdr, ": "), resp, body))
	}
	checkGolden(t, "errors.golden", out.String())
}

func TestHostHeader(t *testing.T) {
	f := newFixture(t, defaultInstance())
	for _, tt := range []struct {
		host string
		want int
	}{
		{"169.254.169.254", 200},
		{"[fd00:ec2::254]", 200},
		{"127.0.0.1:1338", 200},
		{"localhost:1338", 200},
		{"instance-data", 200},
		{"INSTANCE-DATA.ec2.internal.", 200},
		{"attacker.example", 403},
		{"attacker.example:1338", 403},
	} {
		req, _ := http.NewRequest("GET", f.url+"/latest/meta-data/instance-id", nil)
		req.Host = tt.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Host %s: status=%d, want %d", tt.host, resp.StatusCode, tt.want)
		}
	}
}

func TestIMDSv2Modes(t *testing.T) {
	for _, mode := range []string{ec2.TokensOptional, ec2.TokensRequired} {
		t.Run(mode, func(t *testing.T) {
			inst := defaultInstance()
			inst.Metadata.HTTPTokens = mode
			f := newFixture(t, inst)
			resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id")
			want := 200
			if mode == ec2.TokensRequired {
				want = 401
			}
			if resp.StatusCode != want {
				t.Errorf("no token: status=%d, want %d", resp.StatusCode, want)
			}
			resp, body := f.do(t, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "300")
			if resp.StatusCode != 200 || resp.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") != "300" {
				t.Fatalf("PUT: status=%d ttl=%q, want 200 300", resp.StatusCode, resp.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
			}
			tok := body
			f.clock.Add(100 * time.Second)
			resp, body = f.do(t, "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok)
			if resp.StatusCode != 200 || body != inst.ID {
				t.Errorf("with token: %d %q, want 200 %q", resp.StatusCode, body, inst.ID)
			}
			if got := resp.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"); got != "200" {
				t.Errorf("remaining TTL=%q, want 200", got)
			}
			f.clock.Add(200 * time.Second)
			resp, _ = f.do(t, "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok)
			if resp.StatusCode != 401 {
				t.Errorf("expired token: status=%d, want 401", resp.StatusCode)
			}
		})
	}
}

func TestEndpointDisabled(t *testing.T) {
	inst := defaultInstance()
	inst.Metadata.HTTPEndpoint = ec2.EndpointDisabled
	f := newFixture(t, inst)
	for _, c := range [][2]string{{"GET", "/"}, {"GET", "/latest/meta-data/instance-id"}, {"PUT", "/latest/api/token"}, {"GET", "/nope"}} {
		resp, _ := f.do(t, c[0], c[1], "X-aws-ec2-metadata-token-ttl-seconds", "60")
		if resp.StatusCode != 403 {
			t.Errorf("%s %s: status=%d, want 403", c[0], c[1], resp.StatusCode)
		}
	}
}

// TestTokenScopedToInstance checks that a token issued for one instance is
// refused for another even with the same server secret.
func TestTokenScopedToInstance(t *testing.T) {
	a, b := defaultInstance(), richInstance()
	loc := &switchLocator{inst: a}
	f := prepareFixture(t, a)
	f.srv.Instances = loc
	h, err := f.srv.Handler()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	f.url = ts.URL
	tok := f.token(t, "60")
	loc.set(b)
	resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok)
	if resp.StatusCode != 401 {
		t.Errorf("token of %s used by %s: status=%d, want 401", a.Name, b.Name, resp.StatusCode)
	}
	loc.set(a)
	resp, _ = f.do(t, "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok)
	if resp.StatusCode != 200 {
		t.Errorf("token of %s used by %s: status=%d, want 200", a.Name, a.Name, resp.StatusCode)
	}
}

type switchLocator struct {
	mu   sync.Mutex
	inst *ec2.Instance
}

func (l *switchLocator) set(i *ec2.Instance) { l.mu.Lock(); l.inst = i; l.mu.Unlock() }
func (l *switchLocator) LocateInstance(context.Context, ec2.Requester) (*ec2.Instance, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inst, nil
}

// TestCredentialsRotate checks EC2's rotation promise: Expiration stays far
// beyond the SDKs' 15-minute refresh window, and new credentials replace the
// old ones, with LastUpdated, well before the old ones expire.
func TestCredentialsRotate(t *testing.T) {
	f := newFixture(t, defaultInstance())
	path := "/latest/meta-data/iam/security-credentials/" + ec2.DefaultRoleName
	type doc struct{ LastUpdated, Expiration, AccessKeyId string }
	get := func() doc {
		_, body := f.do(t, "GET", path)
		var d doc
		for _, line := range strings.Split(body, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), " : ")
			if !ok {
				continue
			}
			v = strings.Trim(strings.TrimSuffix(v, ","), `"`)
			switch strings.Trim(k, `"`) {
			case "LastUpdated":
				d.LastUpdated = v
			case "Expiration":
				d.Expiration = v
			case "AccessKeyId":
				d.AccessKeyId = v
			}
		}
		return d
	}
	prev := get()
	for step := 0; step < 24; step++ {
		now := f.clock.Now()
		d := get()
		exp, err := time.Parse(time.RFC3339, d.Expiration)
		if err != nil {
			t.Fatal(err)
		}
		if left := exp.Sub(now); left < 4*time.Hour {
			t.Errorf("at %v: Expiration %v is only %v away, want ≥ 4h", now, exp, left)
		}
		if d.AccessKeyId != prev.AccessKeyId {
			pexp, _ := time.Parse(time.RFC3339, prev.Expiration)
			if pexp.Sub(now) < 5*time.Minute {
				t.Errorf("rotated only %v before the old credentials expired", pexp.Sub(now))
			}
			if d.LastUpdated == prev.LastUpdated {
				t.Errorf("rotated without moving LastUpdated")
			}
		}
		prev = d
		f.clock.Add(20 * time.Minute)
	}
	if first := get(); first.AccessKeyId == "" || !strings.HasPrefix(first.AccessKeyId, "ASIA") || len(first.AccessKeyId) != 20 {
		t.Errorf("AccessKeyId=%q, want ASIA + 16 characters", first.AccessKeyId)
	}
}

// TestConcurrentHammer sends token PUTs and GETs of many paths from 64
// connections at once and checks every body against the path it asked for.
func TestConcurrentHammer(t *testing.T) {
	f := newFixture(t, richInstance())
	_, paths := f.crawl(t, "/latest/")
	want := map[string]string{}
	for _, p := range paths {
		if strings.Contains(p, "security-credentials/") && !strings.HasSuffix(p, "/") {
			continue // credentials may rotate; checked separately
		}
		_, body := f.do(t, "GET", p)
		want[p] = body
	}
	sort.Strings(paths)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	var wg sync.WaitGroup
	var errs sync.Map
	var bad int64
	var mu sync.Mutex
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				var req *http.Request
				p := paths[(w*7+i)%len(paths)]
				if i%5 == 0 {
					req, _ = http.NewRequest("PUT", f.url+"/latest/api/token", nil)
					req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
				} else {
					req, _ = http.NewRequest("GET", f.url+p, nil)
				}
				resp, err := client.Do(req)
				if err != nil {
					errs.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				ok := resp.StatusCode == 200
				if req.Method == "GET" {
					if w, checked := want[p]; checked && w != string(b) {
						ok = false
					}
				} else if len(b) != token.EncodedLen {
					ok = false
				}
				if !ok {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	errs.Range(func(k, _ any) bool { t.Errorf("transport error: %v", k); return true })
	if bad != 0 {
		t.Errorf("%d responses had a wrong status or body", bad)
	}
}

func TestUserDataBytes(t *testing.T) {
	inst := defaultInstance()
	inst.UserData = []byte{0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, '\n'}
	f := newFixture(t, inst)
	resp, body := f.do(t, "GET", "/latest/user-data/")
	if resp.StatusCode != 200 || !bytes.Equal([]byte(body), inst.UserData) {
		t.Errorf("user-data: %d %q, want 200 %q", resp.StatusCode, body, inst.UserData)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type=%q, want application/octet-stream", ct)
	}
	_, listing := f.do(t, "GET", "/latest")
	if listing != "dynamic\nmeta-data\nuser-data" {
		t.Errorf("/latest listing=%q", listing)
	}
	f = newFixture(t, defaultInstance())
	resp, _ = f.do(t, "GET", "/latest/user-data")
	if resp.StatusCode != 404 {
		t.Errorf("no user-data: status=%d, want 404", resp.StatusCode)
	}
	if _, listing = f.do(t, "GET", "/latest/"); listing != "dynamic\nmeta-data" {
		t.Errorf("/latest/ listing without user-data=%q", listing)
	}
}

// TestEventsGolden renders an instance with every kind of event issued.
func TestEventsGolden(t *testing.T) {
	inst := defaultInstance()
	inst.LifeCycle = "spot"
	inst.AutoscalingState = "Terminated"
	at := time.Date(2026, 11, 22, 10, 2, 0, 0, time.UTC) // fixed instant: the server's fake clock
	inst.Events = ec2.Events{
		Spot:      &ec2.SpotNotice{Action: ec2.SpotTerminate, Time: at},
		Rebalance: time.Date(2026, 11, 22, 9, 58, 0, 0, time.UTC), // fixed instant: served as events on a fake clock
		Maintenance: []ec2.MaintenanceEvent{
			{ID: "instance-event-0d59937288b749b32", Code: "system-reboot", Description: "scheduled reboot", State: "active",
				NotBefore: time.Date(2026, 11, 23, 9, 0, 43, 0, time.UTC), NotAfter: time.Date(2026, 11, 23, 9, 17, 23, 0, time.UTC)}, // fixed instant: served as events on a fake clock
			{ID: "instance-event-0aaaaaaaaaaaaaaaa", Code: "instance-stop", Description: "[Canceled] scheduled stop", State: "canceled",
				NotBefore: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 11, 20, 9, 20, 0, 0, time.UTC)}, // fixed instant: served as events on a fake clock
		},
	}
	f := newFixture(t, inst)
	var out strings.Builder
	for _, p := range []string{"/latest/meta-data/spot/", "/latest/meta-data/spot/instance-action", "/latest/meta-data/spot/termination-time",
		"/latest/meta-data/events/", "/latest/meta-data/events/recommendations/rebalance", "/latest/meta-data/events/maintenance/scheduled",
		"/latest/meta-data/events/maintenance/history", "/latest/meta-data/instance-life-cycle", "/latest/meta-data/autoscaling/target-lifecycle-state",
		"/2016-09-02/meta-data/spot/", "/2018-08-17/meta-data/events/"} {
		resp, body := f.do(t, "GET", p)
		out.WriteString(render("GET", p, resp, body))
	}
	checkGolden(t, "events.golden", out.String())
	// JSON documents parse as clients parse them.
	_, body := f.do(t, "GET", "/latest/meta-data/events/maintenance/scheduled")
	var evs []map[string]string
	if err := json.Unmarshal([]byte(body), &evs); err != nil || len(evs) != 1 || evs[0]["NotBefore"] != "23 Nov 2026 09:00:43 GMT" {
		t.Errorf("scheduled events %q: %v %v", body, evs, err)
	}
}

// TestInstanceUploadOnlyFromTheHost: md_server's upload endpoint refuses
// requests that do not come from the host itself.
func TestInstanceUploadOnlyFromTheHost(t *testing.T) {
	f := prepareFixture(t, defaultInstance())
	called := 0
	f.srv.Upload = func(context.Context, io.Reader) error { called++; return nil }
	h, err := f.srv.Handler()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		remote string
		want   int
	}{{"127.0.0.1:5000", 200}, {"[::1]:5000", 200}, {"10.0.0.5:5000", 403}} {
		req := httptest.NewRequest("POST", "/instance-upload", strings.NewReader("<domain/>"))
		req.RemoteAddr, req.Host = tt.remote, "169.254.169.254"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("upload from %s: status %d, want %d", tt.remote, w.Code, tt.want)
		}
	}
	if called != 2 {
		t.Errorf("Upload called %d times, want 2", called)
	}
}

// TestReconfigure: allowed hosts, hop distances and user-data change for
// the requests that follow, without a new server.
func TestReconfigure(t *testing.T) {
	f := newFixture(t, defaultInstance())
	hostStatus := func(host string) int {
		req, _ := http.NewRequest("GET", f.url+"/latest/meta-data/instance-id", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := hostStatus("metadata.internal"); got != 403 {
		t.Fatalf("before: %d, want 403", got)
	}
	f.srv.Reconfigure(imds.Settings{
		AllowedHosts: []string{"metadata.internal"},
		HopDistances: []imds.HopDistance{{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Hops: 3}},
		UserData: func(inst *ec2.Instance) ([]byte, error) {
			return []byte("#cloud-config\nhostname: " + inst.Name + "\n"), nil
		},
	})
	if got := hostStatus("metadata.internal"); got != 200 {
		t.Errorf("after allowing metadata.internal: %d, want 200", got)
	}
	if got := f.srv.HopDistance(netip.MustParseAddr("10.1.2.3")); got != 3 {
		t.Errorf("HopDistance(10.1.2.3) = %d, want 3", got)
	}
	if _, body := f.do(t, "GET", "/latest/user-data"); !strings.Contains(body, "hostname: "+f.inst.Name) {
		t.Errorf("user-data after the new renderer: %q", body)
	}
	f.srv.Reconfigure(imds.Settings{})
	if got := hostStatus("metadata.internal"); got != 403 {
		t.Errorf("after removing it again: %d, want 403", got)
	}
}
