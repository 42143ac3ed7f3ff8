package identity

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// fixedNow makes certificate validity dates predictable. It is the time of
// the run, not a date: openssl and crypto/x509 check validity with the real
// clock.
var fixedNow = time.Now().UTC().Truncate(time.Second)

func clock() time.Time { return fixedNow }

// sampleDocument is formatted like EC2's: pretty JSON with " : " separators.
const sampleDocument = `{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "us-east-1a",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-0abcdef1234567890",
  "instanceId" : "i-0123456789abcdef0",
  "instanceType" : "m5.large",
  "kernelId" : null,
  "pendingTime" : "2025-03-14T15:09:26Z",
  "privateIp" : "10.0.0.12",
  "ramdiskId" : null,
  "region" : "us-east-1",
  "version" : "2017-09-30"
}`

func openSigner(t *testing.T, dir string) *Signer {
	t.Helper()
	s, err := Open(dir, clock, rand.Reader)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestOpenCreatesFilesAndIsStable(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "identity")
	s := openSigner(t, dir)

	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700},
		{filepath.Join(dir, "identity-key.pem"), 0o600},
		{filepath.Join(dir, "identity-cert.pem"), 0o644},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatalf("Stat(%s): %v", tc.path, err)
		}
		if got := fi.Mode().Perm(); got != tc.mode {
			t.Errorf("Mode(%s)=%v, want %v", tc.path, got, tc.mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("len(entries)=%v, want 2 (no temp files left behind)", len(entries))
	}

	onDisk, err := os.ReadFile(filepath.Join(dir, "identity-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.CertificatePEM(), onDisk) {
		t.Errorf("CertificatePEM()=%q, want file contents %q", s.CertificatePEM(), onDisk)
	}
	again := openSigner(t, dir)
	if !bytes.Equal(again.CertificatePEM(), s.CertificatePEM()) {
		t.Errorf("CertificatePEM() after reopen=%q, want %q", again.CertificatePEM(), s.CertificatePEM())
	}
	// Signatures from the reopened signer verify against the original key.
	sigs, err := again.Sign([]byte(sampleDocument))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(sigs.Signature)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(sampleDocument))
	if err := rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, digest[:], raw); err != nil {
		t.Errorf("VerifyPKCS1v15 after reopen=%v, want nil", err)
	}
}

func TestCertificate(t *testing.T) {
	t.Parallel()
	s := openSigner(t, t.TempDir())
	block, _ := pem.Decode(s.CertificatePEM())
	if block == nil {
		t.Fatal("CertificatePEM() has no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("PublicKey=%T, want *rsa.PublicKey", cert.PublicKey)
	}
	for _, tc := range []struct {
		field     string
		got, want any
	}{
		{"KeyBits", pub.N.BitLen(), 2048},
		{"SignatureAlgorithm", cert.SignatureAlgorithm, x509.SHA256WithRSA},
		{"Subject", cert.Subject.String(), "CN=imds instance identity signer,OU=EC2 instance identity emulation,O=imds"},
		{"Issuer", cert.Issuer.String(), cert.Subject.String()},
		{"NotBefore", cert.NotBefore, fixedNow.Add(-time.Hour)},
		{"NotAfter", cert.NotAfter, fixedNow.AddDate(10, 0, 0)},
		{"KeyUsage", cert.KeyUsage, x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign},
		{"ExtKeyUsage", len(cert.ExtKeyUsage) == 1 && cert.ExtKeyUsage[0] == x509.ExtKeyUsageEmailProtection, true},
		{"IsCA", cert.BasicConstraintsValid && cert.IsCA, true},
		{"SerialPositive", cert.SerialNumber.Sign(), 1},
		{"SerialBits<=128", cert.SerialNumber.BitLen() <= 128, true},
		{"SelfSigned", cert.CheckSignatureFrom(cert) == nil, true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s=%v, want %v", tc.field, tc.got, tc.want)
		}
	}
	if strings.Contains(strings.ToLower(string(cert.RawSubject)), "amazon") {
		t.Errorf("Subject=%v, want no mention of Amazon", cert.Subject)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	t.Parallel()
	// A second, independent pair for the mismatch case.
	other := t.TempDir()
	openSigner(t, other)
	otherKey, err := os.ReadFile(filepath.Join(other, "identity-key.pem"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		// mutate damages a freshly created pair in dir.
		mutate   func(t *testing.T, dir string)
		wantFile string // base name the error must mention
	}{
		{"corrupt key", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "identity-key.pem"), []byte("not a key\n"), 0o600)
		}, "identity-key.pem"},
		{"truncated key", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "identity-key.pem")
			b, _ := os.ReadFile(p)
			write(t, p, b[:len(b)/2], 0o600)
		}, "identity-key.pem"},
		{"corrupt cert", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "identity-cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
		}, "identity-cert.pem"},
		{"mismatched pair", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "identity-key.pem"), otherKey, 0o600)
		}, "identity-key.pem"},
		{"only key", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "identity-cert.pem"))
		}, "identity-cert.pem"},
		{"only cert", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "identity-key.pem"))
		}, "identity-key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			openSigner(t, dir)
			tc.mutate(t, dir)
			before := snapshot(t, dir)

			s, err := Open(dir, clock, rand.Reader)
			if err == nil {
				t.Fatalf("Open()=%v, want error", s)
			}
			want := filepath.Join(dir, tc.wantFile)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open() error=%q, want it to contain %q", err, want)
			}
			after := snapshot(t, dir)
			if len(after) != len(before) {
				t.Errorf("files=%v, want %v", keys(after), keys(before))
			}
			for name, b := range before {
				if !bytes.Equal(after[name], b) {
					t.Errorf("%s changed: %q, want %q", name, after[name], b)
				}
			}
		})
	}
}

func write(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSignaturesFormat(t *testing.T) {
	t.Parallel()
	s := openSigner(t, t.TempDir())
	sigs, err := s.Sign([]byte(sampleDocument))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value string
	}{
		{"Signature", sigs.Signature},
		{"PKCS7", sigs.PKCS7},
		{"RSA2048", sigs.RSA2048},
	} {
		if strings.HasSuffix(tc.value, "\n") {
			t.Errorf("%s has trailing newline=%v, want false", tc.name, true)
		}
		if strings.Contains(tc.value, "-----BEGIN") {
			t.Errorf("%s contains armour=%v, want false", tc.name, true)
		}
		if _, err := base64.StdEncoding.DecodeString(tc.value); err != nil {
			t.Errorf("%s base64 error=%v, want nil", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name, value string
	}{
		{"PKCS7", sigs.PKCS7},
		{"RSA2048", sigs.RSA2048},
	} {
		der, _ := base64.StdEncoding.DecodeString(tc.value)
		p7, err := pkcs7.Parse(der)
		if err != nil {
			t.Fatalf("%s: pkcs7.Parse: %v", tc.name, err)
		}
		if len(p7.Certificates) != 0 {
			t.Errorf("%s len(Certificates)=%v, want 0", tc.name, len(p7.Certificates))
		}
		if len(p7.Content) != 0 {
			t.Errorf("%s len(Content)=%v, want 0 (detached)", tc.name, len(p7.Content))
		}
	}
}

func TestSignConcurrent(t *testing.T) {
	t.Parallel()
	s := openSigner(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := []byte(strings.Replace(sampleDocument, "10.0.0.12", "10.0.0."+string(rune('a'+i)), 1))
			sigs, err := s.Sign(doc)
			if err != nil {
				errs <- err
				return
			}
			raw, err := base64.StdEncoding.DecodeString(sigs.Signature)
			if err != nil {
				errs <- err
				return
			}
			digest := sha256.Sum256(doc)
			if err := rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, digest[:], raw); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Sign error=%v, want nil", err)
	}
}

// TestOpenSSLVerifies checks the signatures with the real openssl binary,
// following AWS's documented verification recipes.
func TestOpenSSLVerifies(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not found:", err)
	}
	s := openSigner(t, t.TempDir())
	sigs, err := s.Sign([]byte(sampleDocument))
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	path := func(name string) string { return filepath.Join(work, name) }
	sigBin, err := base64.StdEncoding.DecodeString(sigs.Signature)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(sampleDocument, "123456789012", "123456789013", 1))
	write(t, path("document"), []byte(sampleDocument), 0o600)
	write(t, path("tampered"), tampered, 0o600)
	write(t, path("certificate"), s.CertificatePEM(), 0o600)
	write(t, path("sig.bin"), sigBin, 0o600)
	// AWS's recipe: armour added around the served body by the verifier.
	write(t, path("pkcs7"), []byte("-----BEGIN PKCS7-----\n"+sigs.PKCS7+"\n-----END PKCS7-----\n"), 0o600)
	write(t, path("rsa2048"), []byte("-----BEGIN PKCS7-----\n"+sigs.RSA2048+"\n-----END PKCS7-----\n"), 0o600)

	pub, err := exec.Command(openssl, "x509", "-pubkey", "-noout", "-in", path("certificate")).Output()
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v", err)
	}
	write(t, path("pub.pem"), pub, 0o600)

	smime := func(p7, content string, extra ...string) []string {
		return append([]string{"smime", "-verify", "-in", path(p7), "-inform", "PEM", "-content", path(content)}, extra...)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantOK  bool
		wantOut string // substring of combined output, which also pins why a failure failed
	}{
		{"signature", []string{"dgst", "-sha256", "-verify", path("pub.pem"), "-signature", path("sig.bin"), path("document")}, true, "Verified OK"},
		{"signature tampered", []string{"dgst", "-sha256", "-verify", path("pub.pem"), "-signature", path("sig.bin"), path("tampered")}, false, "Verification failure"},
	} {
		t.Run(tc.name, func(t *testing.T) { runOpenSSL(t, openssl, tc.args, tc.wantOK, tc.wantOut) })
	}
	for _, leaf := range []string{"pkcs7", "rsa2048"} {
		for _, tc := range []struct {
			name    string
			args    []string
			wantOK  bool
			wantOut string
		}{
			{"noverify", smime(leaf, "document", "-certfile", path("certificate"), "-noverify"), true, "Verification successful"},
			{"chain", smime(leaf, "document", "-certfile", path("certificate"), "-CAfile", path("certificate")), true, "Verification successful"},
			{"tampered noverify", smime(leaf, "tampered", "-certfile", path("certificate"), "-noverify"), false, "digest failure"},
			{"tampered chain", smime(leaf, "tampered", "-certfile", path("certificate"), "-CAfile", path("certificate")), false, "digest failure"},
			{"no certfile", smime(leaf, "document", "-noverify"), false, "signer certificate not found"},
		} {
			t.Run(leaf+" "+tc.name, func(t *testing.T) { runOpenSSL(t, openssl, tc.args, tc.wantOK, tc.wantOut) })
		}
	}
}

func runOpenSSL(t *testing.T, openssl string, args []string, wantOK bool, wantOut string) {
	t.Helper()
	out, err := exec.Command(openssl, args...).CombinedOutput()
	if ok := err == nil; ok != wantOK {
		t.Fatalf("openssl %s success=%v, want %v; output:\n%s", strings.Join(args, " "), ok, wantOK, out)
	}
	if !strings.Contains(string(out), wantOut) {
		t.Errorf("openssl output=%q, want it to contain %q", out, wantOut)
	}
}
