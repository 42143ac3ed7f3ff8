package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imdsdev/imds/internal/daemon"
)

const sdkConfig = `
instance:
  name: web-1
  region: eu-west-1
  role: web-role
  user_data: "#cloud-config\nhostname: web-1\n"
  public_keys:
    - name: alice
      key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5fakekeyfortestsonly alice@example
`

// get fetches path from the server with IMDSv2 and returns the body.
func get(t testing.TB, base, path string) string {
	t.Helper()
	req, _ := http.NewRequest("PUT", base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest("GET", base+path, nil)
	req.Header.Set("X-aws-ec2-metadata-token", string(tok))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return string(b)
}

// TestGoSDK drives aws-sdk-go-v2's IMDS client and EC2 role credential
// provider against the server, in IMDSv2 optional and required modes, with
// the SDK's IMDSv1 fallback enabled and disabled.
func TestGoSDK(t *testing.T) {
	for _, tt := range []struct {
		name     string
		imdsv2   string
		fallback aws.Ternary
	}{
		{"optional/fallback", "optional", aws.TrueTernary},
		{"optional/v1-disabled", "optional", aws.FalseTernary},
		{"required/fallback", "required", aws.TrueTernary},
		{"required/v1-disabled", "required", aws.FalseTernary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := mustRunServer(t, sdkConfig, tt.imdsv2)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			client := sdkimds.New(sdkimds.Options{Endpoint: srv.URL, EnableFallback: tt.fallback})

			id, err := client.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: "instance-id"})
			if err != nil {
				t.Fatalf("GetMetadata: %v", err)
			}
			instanceID := readAll(t, id.Content)
			if want := get(t, srv.URL, "/latest/meta-data/instance-id"); instanceID != want || !strings.HasPrefix(instanceID, "i-0") {
				t.Errorf("instance-id=%q, want %q", instanceID, want)
			}

			doc, err := client.GetInstanceIdentityDocument(ctx, nil)
			if err != nil {
				t.Fatalf("GetInstanceIdentityDocument: %v", err)
			}
			localIP := get(t, srv.URL, "/latest/meta-data/local-ipv4")
			if doc.InstanceID != instanceID || doc.Region != "eu-west-1" || !strings.HasPrefix(doc.AvailabilityZone, "eu-west-1") ||
				doc.PrivateIP != localIP || len(doc.AccountID) != 12 || doc.Version != "2017-09-30" || doc.PendingTime.IsZero() {
				t.Errorf("identity document %+v inconsistent with instance-id %s and local-ipv4 %s", doc.InstanceIdentityDocument, instanceID, localIP)
			}

			dyn, err := client.GetDynamicData(ctx, &sdkimds.GetDynamicDataInput{Path: "instance-identity/document"})
			if err != nil {
				t.Fatalf("GetDynamicData: %v", err)
			}
			if body := readAll(t, dyn.Content); !strings.Contains(body, `"instanceId" : "`+instanceID+`"`) {
				t.Errorf("dynamic document %q lacks the instance ID", body)
			}

			ud, err := client.GetUserData(ctx, nil)
			if err != nil {
				t.Fatalf("GetUserData: %v", err)
			}
			if got := readAll(t, ud.Content); got != "#cloud-config\nhostname: web-1\n" {
				t.Errorf("user-data=%q", got)
			}

			info, err := client.GetIAMInfo(ctx, nil)
			if err != nil {
				t.Fatalf("GetIAMInfo: %v", err)
			}
			if want := "arn:aws:iam::" + doc.AccountID + ":instance-profile/web-role"; info.InstanceProfileArn != want || !strings.HasPrefix(info.InstanceProfileID, "AIPA") {
				t.Errorf("IAM info %+v, want ARN %s", info.IAMInfo, want)
			}

			region, err := client.GetRegion(ctx, nil)
			if err != nil || region.Region != "eu-west-1" {
				t.Errorf("GetRegion=%v, %v; want eu-west-1", region, err)
			}

			provider := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client })
			creds, err := provider.Retrieve(ctx)
			if err != nil {
				t.Fatalf("ec2rolecreds Retrieve: %v", err)
			}
			served := get(t, srv.URL, "/latest/meta-data/iam/security-credentials/web-role")
			if !strings.HasPrefix(creds.AccessKeyID, "ASIA") || !strings.Contains(served, creds.AccessKeyID) ||
				len(creds.SecretAccessKey) != 40 || len(creds.SessionToken) < 400 || !creds.CanExpire {
				t.Errorf("credentials %v do not match the served %q", creds, served)
			}
			// The SDK caps expiry at one hour; ours is further out, so the cap applies.
			if left := time.Until(creds.Expires); left < 55*time.Minute {
				t.Errorf("credentials expire in %v, want about an hour (SDK cap)", left)
			}

			if tt.imdsv2 == "required" || tt.fallback == aws.FalseTernary {
				if logs := srv.logs.String(); strings.Contains(logs, "api=v1") {
					t.Errorf("a request went without a token:\n%s", logs)
				}
			}
		})
	}
}

func readAll(t testing.TB, r io.ReadCloser) string {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIdentitySignatures verifies the three signatures served for the
// identity document with the certificate `imds ca cert` prints: the RSA
// signature in Go, the PKCS#7 ones with openssl following the AWS recipe.
func TestIdentitySignatures(t *testing.T) {
	srv := mustRunServer(t, "", "")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ca", "cert", "--data-dir", srv.DataDir}, &out, &errOut); code != 0 {
		t.Fatalf("imds ca cert: exit %d: %s", code, errOut.String())
	}
	certPEM := out.Bytes()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("imds ca cert printed no PEM: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	doc := get(t, srv.URL, "/latest/dynamic/instance-identity/document")
	sig, err := base64.StdEncoding.DecodeString(get(t, srv.URL, "/latest/dynamic/instance-identity/signature"))
	if err != nil {
		t.Fatalf("signature is not base64: %v", err)
	}
	digest := sha256.Sum256([]byte(doc))
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("signature does not verify against imds ca cert: %v", err)
	}

	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	docPath, certPath := write("document", doc), write("certificate", string(certPEM))
	for _, leaf := range []string{"pkcs7", "rsa2048"} {
		body := get(t, srv.URL, "/latest/dynamic/instance-identity/"+leaf)
		p7 := write(leaf, "-----BEGIN PKCS7-----\n"+body+"\n-----END PKCS7-----\n")
		cmd := exec.Command(openssl, "smime", "-verify", "-in", p7, "-inform", "PEM", "-content", docPath, "-certfile", certPath, "-noverify")
		if outb, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(outb), "Verification successful") {
			t.Errorf("openssl smime -verify %s: %v\n%s", leaf, err, outb)
		}
		tampered := write("document.tampered", strings.Replace(doc, "x86_64", "arm64", 1))
		cmd = exec.Command(openssl, "smime", "-verify", "-in", p7, "-inform", "PEM", "-content", tampered, "-certfile", certPath, "-noverify")
		if outb, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("openssl accepted %s over a tampered document:\n%s", leaf, outb)
		}
	}
}

// TestDefaultInstanceConsistent checks that the zero-configuration instance
// repeats the same values wherever the tree shows them, and keeps them (and
// its signing certificate) across restarts.
func TestDefaultInstanceConsistent(t *testing.T) {
	srv := mustRunServer(t, "", "")
	m := func(p string) string { return get(t, srv.URL, "/latest/meta-data/"+p) }
	id, az, region, mac, ip := m("instance-id"), m("placement/availability-zone"), m("placement/region"), m("mac"), m("local-ipv4")
	doc := get(t, srv.URL, "/latest/dynamic/instance-identity/document")
	for _, want := range []string{`"instanceId" : "` + id + `"`, `"availabilityZone" : "` + az + `"`, `"region" : "` + region + `"`, `"privateIp" : "` + ip + `"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("identity document lacks %s:\n%s", want, doc)
		}
	}
	if !strings.HasPrefix(az, region) || region != "us-east-1" {
		t.Errorf("region %q / AZ %q", region, az)
	}
	if got := m("network/interfaces/macs/"); got != mac+"/" {
		t.Errorf("macs listing=%q, want %q", got, mac+"/")
	}
	if got := m("network/interfaces/macs/" + mac + "/local-ipv4s"); got != ip {
		t.Errorf("ENI local-ipv4s=%q, want %q", got, ip)
	}
	if got := m("network/interfaces/macs/" + mac + "/mac"); got != mac {
		t.Errorf("ENI mac=%q, want %q", got, mac)
	}
	if host := m("local-hostname"); host != "ip-"+strings.ReplaceAll(ip, ".", "-")+".ec2.internal" || m("hostname") != host {
		t.Errorf("local-hostname=%q for IP %s", host, ip)
	}
	account := m("network/interfaces/macs/" + mac + "/owner-id")
	if !strings.Contains(doc, `"accountId" : "`+account+`"`) || !strings.Contains(m("iam/info"), "arn:aws:iam::"+account+":instance-profile/") {
		t.Errorf("account ID %s not consistent across owner-id, document and iam/info", account)
	}
	if !strings.Contains(m("identity-credentials/ec2/info"), `"AccountId" : "`+account+`"`) {
		t.Errorf("identity-credentials/ec2/info lacks account %s", account)
	}

	var cert1, cert2, errOut bytes.Buffer
	run(context.Background(), []string{"ca", "cert", "--data-dir", srv.DataDir}, &cert1, &errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := startServer(t, "", func(c *daemon.Config) { c.DataDir = srv.DataDir })
	if got := get(t, d2.URL, "/latest/meta-data/instance-id"); got != id {
		t.Errorf("after restart instance-id=%q, want %q", got, id)
	}
	if got := get(t, d2.URL, "/latest/meta-data/mac"); got != mac {
		t.Errorf("after restart mac=%q, want %q", got, mac)
	}
	run(context.Background(), []string{"ca", "cert", "--data-dir", srv.DataDir}, &cert2, &errOut)
	if cert1.Len() == 0 || cert1.String() != cert2.String() {
		t.Errorf("signing certificate changed across restarts")
	}
}

// TestCACertNeverCreates: `imds ca cert` in a data directory where no server
// has started fails with a message that says so and creates nothing (it used
// to make a new key, so the AWS verification recipe failed with "signer
// certificate not found").
func TestCACertNeverCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "elsewhere")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"ca", "cert", "--data-dir", dir}, &out, &errOut)
	if code == 0 || out.Len() > 0 || !strings.Contains(errOut.String(), "has no identity certificate") || !strings.Contains(errOut.String(), "--data-dir") {
		t.Errorf("imds ca cert in an empty data directory: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("imds ca cert created %s: %v", dir, err)
	}
}
