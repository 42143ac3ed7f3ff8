package main

// Real-client tests: Debian's python3-botocore and cloud-init, driven by the
// scripts in testdata/clients, read a server started by mustRunServer. Their
// results are checked against what the same server answers to plain HTTP
// requests, and the server's access log shows whether they used tokens.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	systemPython = "/usr/bin/python3"
	// testUA marks the test's own requests, to leave them out of the log
	// assertions about the clients.
	testUA = "imds-pyclients-test"
	// botocoreFetcherUA is the user agent botocore_client.py gives the
	// fetchers it builds itself.
	botocoreFetcherUA = "imds-test-botocore-fetcher"

	pyClientKey      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1mb3ItcmVhbC11c2U alice@example"
	pyClientUserData = "#cloud-config\nhostname: web-1\n# caf\u00e9 \u2713\n"
)

// pyClientConfig is the instance the client tests run against; extra is
// appended inside instance:.
func pyClientConfig(extra string) string {
	return "instance:\n" +
		"  name: web-1\n" +
		"  region: eu-west-1\n" +
		"  public_keys: [{name: alice, key: " + strconv.Quote(pyClientKey) + "}]\n" +
		"  user_data: " + strconv.Quote(pyClientUserData) + "\n" +
		"  role: web-role\n" + extra
}

// pyClientModes are the IMDSv2 settings every client runs under: required
// is set both ways the server accepts it.
var pyClientModes = []struct {
	name     string
	extra    string // added to instance:
	flag     string // mustRunServer's imdsv2 argument
	required bool
}{
	{name: "optional", flag: "optional"},
	{name: "required-flag", flag: "required", required: true},
	{name: "required-config", extra: "  imdsv2: required\n", required: true},
}

// requirePythonModule skips the test when the system python cannot import
// module because the Debian package pkg is not installed; CI installs them.
func requirePythonModule(t *testing.T, module, pkg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, systemPython, "-c", "import "+module).CombinedOutput()
	if err != nil {
		t.Skipf("%s cannot import %s (apt-get install %s): %v\n%s",
			systemPython, module, pkg, err, bytes.TrimSpace(out))
	}
}

// runPyClient runs a script of testdata/clients against srv and returns its
// stdout and stderr; err is the exit error, if any.
func runPyClient(t *testing.T, srv *testServer, script string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 70*time.Second)
	defer cancel()
	argv := append([]string{filepath.Join("testdata", "clients", script)}, args...)
	argv = append(argv, srv.URL)
	cmd := exec.CommandContext(ctx, systemPython, argv...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err = cmd.Run()
	t.Logf("%s %s: %v in %s", script, strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
	return o.Bytes(), e.Bytes(), err
}

// mustRunPyClient runs a script that must succeed and decodes its JSON.
func mustRunPyClient(t *testing.T, srv *testServer, out any, script string, args ...string) {
	t.Helper()
	stdout, stderr, err := runPyClient(t, srv, script, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\nstderr:\n%s\nserver log:\n%s", script, err, stderr, srv.logs.String())
	}
	if len(bytes.TrimSpace(stderr)) > 0 {
		t.Logf("%s stderr:\n%s", script, stderr)
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("%s printed no JSON object: %v\n%s", script, err, stdout)
	}
}

// imdsGet is the test's own IMDSv2 read of path on srv; it must answer 200.
func imdsGet(t *testing.T, srv *testServer, path string) []byte {
	t.Helper()
	do := func(method, path string, h http.Header) []byte {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		req.Header.Set("User-Agent", testUA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s\n%s", method, path, resp.Status, body)
		}
		return body
	}
	tok := do(http.MethodPut, "/latest/api/token", http.Header{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": {"60"}})
	return do(http.MethodGet, path, http.Header{"X-Aws-Ec2-Metadata-Token": {string(tok)}})
}

// serverFacts are the server's own answers the clients are checked against.
type serverFacts struct {
	instanceID, localHostname, zone, region, key, role, mac string
	userData                                                []byte
	accessKeyID, expiration                                 string
}

func fetchServerFacts(t *testing.T, srv *testServer) serverFacts {
	t.Helper()
	f := serverFacts{
		instanceID:    string(imdsGet(t, srv, "/latest/meta-data/instance-id")),
		localHostname: string(imdsGet(t, srv, "/latest/meta-data/local-hostname")),
		zone:          string(imdsGet(t, srv, "/latest/meta-data/placement/availability-zone")),
		region:        string(imdsGet(t, srv, "/latest/meta-data/placement/region")),
		key:           string(imdsGet(t, srv, "/latest/meta-data/public-keys/0/openssh-key")),
		role:          string(imdsGet(t, srv, "/latest/meta-data/iam/security-credentials/")),
		mac:           string(imdsGet(t, srv, "/latest/meta-data/mac")),
		userData:      imdsGet(t, srv, "/latest/user-data"),
	}
	var c struct{ Code, AccessKeyId, SecretAccessKey, Token, Expiration string }
	body := imdsGet(t, srv, "/latest/meta-data/iam/security-credentials/web-role")
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("credentials: %v\n%s", err, body)
	}
	if c.Code != "Success" || c.AccessKeyId == "" || c.SecretAccessKey == "" || c.Token == "" || c.Expiration == "" {
		t.Fatalf("incomplete credentials: %s", body)
	}
	f.accessKeyID, f.expiration = c.AccessKeyId, c.Expiration

	// The facts themselves must be those of the config.
	if f.region != "eu-west-1" || !strings.HasPrefix(f.zone, "eu-west-1") || len(f.zone) != len("eu-west-1")+1 {
		t.Errorf("server region %q, zone %q; want eu-west-1 and a zone in it", f.region, f.zone)
	}
	if f.role != "web-role" {
		t.Errorf("server role listing %q, want web-role", f.role)
	}
	if f.key != pyClientKey {
		t.Errorf("server key %q, want %q", f.key, pyClientKey)
	}
	if string(f.userData) != pyClientUserData {
		t.Errorf("server user-data %q, want %q", f.userData, pyClientUserData)
	}
	return f
}

// accessLine is one access log line of the server.
type accessLine struct {
	method, path, api, ua string
	status                int
}

func (l accessLine) String() string {
	return l.method + " " + l.path + " " + strconv.Itoa(l.status) + " api=" + l.api + " ua=" + l.ua
}

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// accessLog parses the server's text log, leaving out the test's own
// requests.
func accessLog(t *testing.T, srv *testServer) []accessLine {
	t.Helper()
	var lines []accessLine
	for _, raw := range strings.Split(srv.logs.String(), "\n") {
		kv := map[string]string{}
		for _, m := range logField.FindAllStringSubmatch(raw, -1) {
			v := m[2]
			if strings.HasPrefix(v, `"`) {
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				}
			}
			kv[m[1]] = v
		}
		if kv["msg"] != "request" || kv["ua"] == testUA {
			continue
		}
		status, err := strconv.Atoi(kv["status"])
		if err != nil {
			t.Fatalf("access log line without a status: %s", raw)
		}
		lines = append(lines, accessLine{method: kv["method"], path: kv["path"], api: kv["api"], ua: kv["ua"], status: status})
	}
	if len(lines) == 0 {
		t.Fatalf("no client request in the server log:\n%s", srv.logs.String())
	}
	return lines
}

// checkAllTokens asserts that the client got a token and sent it on every
// GET, all answered 200, and that it requested each of paths.
func checkAllTokens(t *testing.T, lines []accessLine, paths ...string) {
	t.Helper()
	puts, gets := 0, map[string]bool{}
	for _, l := range lines {
		switch {
		case l.method == http.MethodPut && l.path == "/latest/api/token" && l.status == 200:
			puts++
		case l.method == http.MethodGet && l.api == "v2" && l.status == 200:
			gets[l.path] = true
		default:
			t.Errorf("unexpected request: %s", l)
		}
	}
	if puts == 0 {
		t.Errorf("the client never got a token")
	}
	for _, p := range paths {
		if !gets[p] {
			t.Errorf("no IMDSv2 GET %s answered 200", p)
		}
	}
}

func TestBotocoreIMDS(t *testing.T) {
	t.Parallel()
	requirePythonModule(t, "botocore", "python3-botocore")
	for _, mode := range pyClientModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := mustRunServer(t, pyClientConfig(mode.extra), mode.flag)

			type creds struct {
				AccessKeyID   string `json:"access_key_id"`
				SecretPresent bool   `json:"secret_present"`
				TokenPresent  bool   `json:"token_present"`
				Expiry        string `json:"expiry"`
			}
			var out struct {
				Version           string `json:"botocore_version"`
				V1DisabledSupport bool   `json:"v1_disabled_supported"`
				V1Disabled        bool   `json:"v1_disabled"`
				Fetcher           struct {
					creds
					RoleName string `json:"role_name"`
				} `json:"fetcher"`
				RegionFetcher struct {
					Region string `json:"region"`
				} `json:"region_fetcher"`
				Session struct {
					creds
					Method       string  `json:"method"`
					ConfigRegion *string `json:"config_region"`
					IMDSRegion   string  `json:"imds_region"`
					AutoMode     string  `json:"auto_mode_for_eu_west_1"`
					UserAgent    string  `json:"user_agent"`
				} `json:"session"`
			}
			mustRunPyClient(t, srv, &out, "botocore_client.py")
			f := fetchServerFacts(t, srv)
			t.Logf("botocore %s: session region from config %v, from IMDS %q", out.Version, out.Session.ConfigRegion, out.Session.IMDSRegion)

			if out.Fetcher.RoleName != f.role {
				t.Errorf("fetcher role %q, server lists %q", out.Fetcher.RoleName, f.role)
			}
			for name, c := range map[string]creds{"fetcher": out.Fetcher.creds, "session": out.Session.creds} {
				if c.AccessKeyID != f.accessKeyID {
					t.Errorf("%s access key %q, server serves %q", name, c.AccessKeyID, f.accessKeyID)
				}
				if !c.SecretPresent || !c.TokenPresent {
					t.Errorf("%s: secret present %v, token present %v", name, c.SecretPresent, c.TokenPresent)
				}
				// Equal unless botocore extended an expiration it found too
				// close, which would mean the server's is too short.
				if c.Expiry != f.expiration {
					t.Errorf("%s expiry %q, server's Expiration %q", name, c.Expiry, f.expiration)
				}
			}
			if out.Session.Method != "iam-role" {
				t.Errorf("session credentials method %q, want iam-role", out.Session.Method)
			}
			if out.RegionFetcher.Region != f.region || out.Session.IMDSRegion != f.region {
				t.Errorf("region: fetcher %q, session IMDS provider %q; server %q",
					out.RegionFetcher.Region, out.Session.IMDSRegion, f.region)
			}
			if out.Session.AutoMode != "in-region" {
				t.Errorf("defaults_mode auto for eu-west-1 resolved to %q, want in-region", out.Session.AutoMode)
			}

			// botocore always asks for a token first, whatever the mode.
			lines := accessLog(t, srv)
			checkAllTokens(t, lines,
				"/latest/meta-data/iam/security-credentials/",
				"/latest/meta-data/iam/security-credentials/web-role",
				"/latest/meta-data/placement/availability-zone/")
			var fetcher, session bool
			for _, l := range lines {
				fetcher = fetcher || l.ua == botocoreFetcherUA
				session = session || (l.ua == out.Session.UserAgent && strings.HasPrefix(l.ua, "Botocore/"))
			}
			if !fetcher || !session {
				t.Errorf("requests of the fetchers seen: %v, of the session (%q): %v", fetcher, out.Session.UserAgent, session)
			}

			if !out.V1DisabledSupport {
				t.Logf("botocore %s has no ec2_metadata_v1_disabled; --v1-disabled not run", out.Version)
				return
			}
			var v1 struct {
				V1Disabled  bool   `json:"v1_disabled"`
				AccessKeyID string `json:"access_key_id"`
				Region      string `json:"region"`
			}
			mustRunPyClient(t, srv, &v1, "botocore_client.py", "--v1-disabled")
			if !v1.V1Disabled || v1.AccessKeyID != f.accessKeyID || v1.Region != f.region {
				t.Errorf("with IMDSv1 disabled: %+v; want access key %q, region %q", v1, f.accessKeyID, f.region)
			}
		})
	}
}

// cloudInitOut is what cloudinit_client.py prints.
type cloudInitOut struct {
	Version  string `json:"cloudinit_version"`
	Platform string `json:"platform"`
	Helpers  struct {
		TokenUsed        bool              `json:"token_used"`
		InstanceID       string            `json:"instance_id"`
		LocalHostname    string            `json:"local_hostname"`
		PublicKeys       map[string]string `json:"public_keys"`
		AvailabilityZone string            `json:"availability_zone"`
		Region           string            `json:"region"`
		IAMInfo          map[string]any    `json:"iam_info"`
		IAMKeys          []string          `json:"iam_keys"`
		MetaDataKeys     []string          `json:"meta_data_keys"`
		UserDataB64      string            `json:"user_data_b64"`
		IdentityKeys     []string          `json:"identity_keys"`
		IdentityDocument map[string]any    `json:"identity_document"`
	} `json:"helpers"`
	Datasource struct {
		CloudName        string   `json:"cloud_name"`
		MetadataAddress  string   `json:"metadata_address"`
		APIVersion       string   `json:"api_version"`
		TokenUsed        bool     `json:"token_used"`
		InstanceID       string   `json:"instance_id"`
		LocalHostname    string   `json:"local_hostname"`
		PublicKeys       []string `json:"public_keys"`
		UserData         string   `json:"user_data"`
		UserDataB64      string   `json:"user_data_b64"`
		AvailabilityZone string   `json:"availability_zone"`
		Region           string   `json:"region"`
		IsClassic        bool     `json:"is_classic_instance"`
		NetworkConfig    struct {
			Version   int `json:"version"`
			Ethernets map[string]struct {
				DHCP4 bool `json:"dhcp4"`
				Match struct {
					MACAddress string `json:"macaddress"`
				} `json:"match"`
			} `json:"ethernets"`
		} `json:"network_config"`
		IdentityInstanceID  *string `json:"identity_instance_id"`
		InstanceDataWritten bool    `json:"instance_data_written"`
	} `json:"datasource"`
}

func TestCloudInitIMDS(t *testing.T) {
	t.Parallel()
	requirePythonModule(t, "cloudinit", "cloud-init")
	for _, mode := range pyClientModes {
		for _, platform := range []string{"aws", "unknown"} {
			t.Run(mode.name+"/"+platform, func(t *testing.T) {
				t.Parallel()
				srv := mustRunServer(t, pyClientConfig(mode.extra), mode.flag)
				if mode.required && platform == "unknown" {
					testCloudInitV1Refused(t, srv)
					return
				}
				var out cloudInitOut
				mustRunPyClient(t, srv, &out, "cloudinit_client.py", "--platform", platform)
				f := fetchServerFacts(t, srv)
				checkCloudInit(t, srv, &out, f, platform == "aws")

				lines := accessLog(t, srv)
				if platform == "aws" {
					checkAllTokens(t, lines,
						"/2021-03-23/meta-data/instance-id",
						"/2021-03-23/meta-data/",
						"/2021-03-23/user-data",
						"/2021-03-23/dynamic/instance-identity",
						"/2021-03-23/meta-data/public-keys/0/openssh-key")
					return
				}
				// A cloud-init that does not know it is on AWS uses IMDSv1 only.
				gets := map[string]bool{}
				for _, l := range lines {
					if l.method != http.MethodGet || l.api != "v1" || l.status != 200 {
						t.Errorf("unexpected request: %s", l)
					}
					gets[l.path] = true
				}
				for _, p := range []string{"/2009-04-04/meta-data/instance-id", "/2021-03-23/meta-data/", "/2021-03-23/user-data"} {
					if !gets[p] {
						t.Errorf("no IMDSv1 GET %s", p)
					}
				}
			})
		}
	}
}

func checkCloudInit(t *testing.T, srv *testServer, out *cloudInitOut, f serverFacts, aws bool) {
	t.Helper()
	h, ds := &out.Helpers, &out.Datasource
	wantUD := base64.StdEncoding.EncodeToString(f.userData)

	// helpers.ec2: the crawl of meta-data/, user-data and the identity.
	if h.TokenUsed != aws {
		t.Errorf("helpers used a token: %v, want %v", h.TokenUsed, aws)
	}
	if h.InstanceID != f.instanceID || h.LocalHostname != f.localHostname || h.AvailabilityZone != f.zone || h.Region != f.region {
		t.Errorf("helpers crawl: instance-id %q, local-hostname %q, zone %q, region %q; server %q, %q, %q, %q",
			h.InstanceID, h.LocalHostname, h.AvailabilityZone, h.Region, f.instanceID, f.localHostname, f.zone, f.region)
	}
	if len(h.PublicKeys) != 1 || h.PublicKeys["alice"] != f.key {
		t.Errorf("helpers public-keys %q, want {alice: %q}", h.PublicKeys, f.key)
	}
	if h.UserDataB64 != wantUD {
		t.Errorf("helpers user-data (base64) %q, server %q", h.UserDataB64, wantUD)
	}
	if h.IAMInfo["Code"] != "Success" || !strings.Contains(anyString(h.IAMInfo["InstanceProfileArn"]), ":instance-profile/") {
		t.Errorf("helpers iam/info was not decoded as a JSON object: %v", h.IAMInfo)
	}
	if slices.Contains(h.IAMKeys, "security-credentials") || !slices.Contains(h.IAMKeys, "info") {
		t.Errorf("helpers iam keys %q: want info and no security-credentials", h.IAMKeys)
	}
	for _, k := range []string{"ami-id", "hostname", "instance-type", "local-ipv4", "mac", "network", "placement", "public-keys", "services"} {
		if !slices.Contains(h.MetaDataKeys, k) {
			t.Errorf("helpers meta-data has no %q: %q", k, h.MetaDataKeys)
		}
	}
	for _, k := range []string{"document", "pkcs7", "signature", "rsa2048"} {
		if !slices.Contains(h.IdentityKeys, k) {
			t.Errorf("helpers instance-identity has no %q: %q", k, h.IdentityKeys)
		}
	}
	doc := h.IdentityDocument
	if doc["instanceId"] != f.instanceID || doc["region"] != f.region || doc["availabilityZone"] != f.zone {
		t.Errorf("helpers identity document %v; want instance %q, region %q, zone %q", doc, f.instanceID, f.region, f.zone)
	}

	// DataSourceEc2.get_data().
	wantCloud := "unknown"
	if aws {
		wantCloud = "aws"
	}
	if ds.CloudName != wantCloud || ds.TokenUsed != aws {
		t.Errorf("datasource cloud %q, token used %v; want %q, %v", ds.CloudName, ds.TokenUsed, wantCloud, aws)
	}
	if ds.MetadataAddress != srv.URL || ds.APIVersion != "2021-03-23" {
		t.Errorf("datasource picked %q version %q, want %q version 2021-03-23", ds.MetadataAddress, ds.APIVersion, srv.URL)
	}
	if ds.InstanceID != f.instanceID || ds.LocalHostname != f.localHostname {
		t.Errorf("datasource instance-id %q, local-hostname %q; server %q, %q", ds.InstanceID, ds.LocalHostname, f.instanceID, f.localHostname)
	}
	if !slices.Equal(ds.PublicKeys, []string{f.key}) {
		t.Errorf("datasource public keys %q, want [%q]", ds.PublicKeys, f.key)
	}
	if ds.UserDataB64 != wantUD || ds.UserData != pyClientUserData {
		t.Errorf("datasource user-data %q (base64 %q), server %q", ds.UserData, ds.UserDataB64, wantUD)
	}
	if ds.AvailabilityZone != f.zone || ds.Region != f.region {
		t.Errorf("datasource zone %q, region %q; server %q, %q", ds.AvailabilityZone, ds.Region, f.zone, f.region)
	}
	if ds.IsClassic {
		t.Errorf("datasource took the instance for EC2-Classic: no vpc-id under network/interfaces/macs/")
	}
	// The script presents the primary MAC as eth0; cloud-init must find it
	// under network/interfaces/macs/ and configure it.
	if nc := ds.NetworkConfig; nc.Version != 2 || len(nc.Ethernets) != 1 ||
		!nc.Ethernets["eth0"].DHCP4 || nc.Ethernets["eth0"].Match.MACAddress != f.mac {
		t.Errorf("datasource network config %+v; want version 2, eth0 with dhcp4 matching %q", nc, f.mac)
	}
	// On AWS cloud-init reads the instance ID from the identity document.
	if got := ds.IdentityInstanceID; aws && (got == nil || *got != f.instanceID) || !aws && got != nil {
		t.Errorf("datasource identity instanceId %v (aws %v), server %q", anyString(got), aws, f.instanceID)
	}
	if !ds.InstanceDataWritten {
		t.Errorf("datasource did not write instance-data.json into its temporary run_dir")
	}
}

// testCloudInitV1Refused checks that cloud-init, not knowing it runs on AWS,
// gets nothing from an instance that requires tokens: it only speaks IMDSv1,
// and EC2 answers 401 to that.
func testCloudInitV1Refused(t *testing.T, srv *testServer) {
	_, stderr, err := runPyClient(t, srv, "cloudinit_client.py", "--platform", "unknown", "--max-wait", "2", "--retries", "0")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("cloud-init with IMDSv1 against IMDSv2 required: %v, want exit status 1\nstderr:\n%s", err, stderr)
	}
	for _, want := range []string{"datasource: DataSourceEc2.get_data() returned False", "helpers: get_instance_metadata returned nothing"} {
		if !bytes.Contains(stderr, []byte(want)) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	probed := false
	for _, l := range accessLog(t, srv) {
		if l.status != http.StatusUnauthorized || l.api != "v1" || l.method != http.MethodGet {
			t.Errorf("unexpected request: %s", l)
		}
		probed = probed || l.path == "/2009-04-04/meta-data/instance-id"
	}
	if !probed {
		t.Errorf("cloud-init did not probe /2009-04-04/meta-data/instance-id")
	}
}

func anyString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case *string:
		if v == nil {
			return "<nil>"
		}
		return *v
	}
	b, _ := json.Marshal(v)
	return string(b)
}
