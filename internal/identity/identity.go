package identity

import (
	"github.com/imdsdev/imds/internal/atomicfile"

	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/pkcs7"
)

// File names inside the directory given to Open. They are part of the on-disk
// contract: renaming them would silently mint a new certificate and break
// every verifier configured with the old one.
const (
	keyFile  = "identity-key.pem"
	certFile = "identity-cert.pem"
)

// Modes of what Open creates. The key is secret; the certificate is meant to be
// handed out.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// certLifetime is long because the certificate is distributed to verifiers by
// hand; an expiry would break them without anyone touching imds.
const certLifetime = 10 // years

// Signer signs instance identity documents with an RSA-2048 key and a
// self-signed certificate stored in a directory.
//
// A Signer is immutable after Open, so it is safe for concurrent use.
type Signer struct {
	key     *rsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

// Open loads the key and certificate from dir, creating them on first use.
//
// dir is created 0700 if missing. Files: dir/identity-key.pem (PKCS#8 PEM,
// mode 0600) and dir/identity-cert.pem (0644). now and rand are injected so
// tests control validity dates and randomness; use time.Now and
// crypto/rand.Reader in production.
//
// Writes are atomic (temp file in the same dir, fsync, rename, fsync dir) so a
// crash never leaves half a file. Existing files are never overwritten: a
// file that cannot be parsed, a key that does not match the certificate, or
// only one of the two files being present is an error naming the file,
// because regenerating would invalidate a certificate someone may have
// already distributed. Deleting both files is the explicit way to start over.
func Open(dir string, now func() time.Time, rand io.Reader) (*Signer, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("identity: create directory %s: %w", dir, err)
	}
	keyPath := filepath.Join(dir, keyFile)
	certPath := filepath.Join(dir, certFile)

	keyPEM, keyErr := os.ReadFile(keyPath)
	certPEM, certErr := os.ReadFile(certPath)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	switch {
	case keyMissing && certMissing:
		return create(dir, keyPath, certPath, now, rand)
	case keyErr != nil && !keyMissing:
		return nil, fmt.Errorf("identity: read %s: %w", keyPath, keyErr)
	case certErr != nil && !certMissing:
		return nil, fmt.Errorf("identity: read %s: %w", certPath, certErr)
	case keyMissing:
		return nil, fmt.Errorf("identity: %s is missing but %s exists; refusing to generate a new key for an existing certificate (delete both to start over)", keyPath, certPath)
	case certMissing:
		return nil, fmt.Errorf("identity: %s is missing but %s exists; refusing to guess the certificate (delete both to start over)", certPath, keyPath)
	}
	return load(keyPath, keyPEM, certPath, certPEM)
}

// load parses and cross-checks existing files.
// ErrNoCertificate is returned (wrapped) by ReadCertificate when dir holds
// no certificate: the server has not started with that data directory.
var ErrNoCertificate = errors.New("no identity certificate")

// ReadCertificate returns the PEM certificate that Open created in dir,
// without creating anything: printing a certificate must not make a new key
// that signs nothing the server serves.
func ReadCertificate(dir string) ([]byte, error) {
	path := filepath.Join(dir, certFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCertificate, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	if _, err := parseCert(b); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return b, nil
}

func load(keyPath string, keyPEM []byte, certPath string, certPEM []byte) (*Signer, error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", keyPath, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", certPath, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("identity: %s does not match the public key in %s", keyPath, certPath)
	}
	return &Signer{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

func parseKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want RSA", k)
	}
	return key, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want \"CERTIFICATE\"", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// create generates a fresh key and certificate and persists them.
func create(dir, keyPath, certPath string, now func() time.Time, rand io.Reader) (*Signer, error) {
	key, err := rsa.GenerateKey(rand, 2048)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	serial, err := randomSerial(rand)
	if err != nil {
		return nil, fmt.Errorf("identity: generate serial: %w", err)
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Clearly not Amazon: nobody should mistake this for an AWS certificate.
		Subject: pkix.Name{
			Organization:       []string{"imds"},
			OrganizationalUnit: []string{"EC2 instance identity emulation"},
			CommonName:         "imds instance identity signer",
		},
		// Backdated so a verifier whose clock is slightly behind still accepts it.
		NotBefore:          t.Add(-time.Hour),
		NotAfter:           t.AddDate(certLifetime, 0, 0),
		SignatureAlgorithm: x509.SHA256WithRSA,
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		// S/MIME purpose lets `openssl smime -verify -CAfile` accept it as signer.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		// CA so the certificate can be its own trust anchor (-CAfile).
		IsCA: true,
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: parse new certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	// Key first: a crash between the two leaves only the key, which Open then
	// reports instead of handing out a certificate whose key was lost.
	if err := atomicfile.Write(keyPath, keyPEM, keyMode); err != nil {
		return nil, fmt.Errorf("identity: write %s: %w", keyPath, err)
	}
	if err := atomicfile.Write(certPath, certPEM, certMode); err != nil {
		return nil, fmt.Errorf("identity: write %s: %w", certPath, err)
	}
	return &Signer{key: key, cert: cert, certPEM: certPEM}, nil
}

// randomSerial returns a random positive 128-bit serial; RFC 5280 asks for
// unpredictable serials and a new certificate must never repeat an old one.
func randomSerial(rand io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		n.SetInt64(1) // serials must be positive
	}
	return n, nil
}

// CertificatePEM returns the certificate in PEM form (what `imds ca cert`
// prints), which verifiers need in place of the AWS regional certificate.
func (s *Signer) CertificatePEM() []byte {
	return bytes.Clone(s.certPEM)
}

// Signatures are the three signature leaves, each base64 without armour or
// trailing newline, because EC2 serves them that way and AWS's verification
// recipes add the PEM armour themselves.
type Signatures struct {
	// Signature is an RSA PKCS#1 v1.5 SHA-256 signature over the document
	// (the dynamic/instance-identity/signature leaf).
	Signature string
	// PKCS7 is a detached PKCS#7 SignedData. AWS uses DSA with SHA-1 here;
	// we use RSA with SHA-256 because OpenSSL 3 rejects SHA-1 by default.
	PKCS7 string
	// RSA2048 is a detached PKCS#7 SignedData with RSA and SHA-256, as AWS
	// documents for the rsa2048 leaf.
	RSA2048 string
}

// Sign signs doc (the exact bytes served as the document).
func (s *Signer) Sign(doc []byte) (Signatures, error) {
	digest := sha256.Sum256(doc)
	// PKCS#1 v1.5 is deterministic, so no randomness is needed (and sharing
	// the injected reader across goroutines would not be safe).
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return Signatures{}, fmt.Errorf("identity: sign document: %w", err)
	}
	p7, err := s.signPKCS7(doc)
	if err != nil {
		return Signatures{}, err
	}
	enc := base64.StdEncoding.EncodeToString(p7)
	// With both leaves using RSA and SHA-256 they are the same message; one
	// signature serves both and halves the cost.
	return Signatures{
		Signature: base64.StdEncoding.EncodeToString(sig),
		PKCS7:     enc,
		RSA2048:   enc,
	}, nil
}

// signPKCS7 returns a detached DER PKCS#7 SignedData without certificates.
func (s *Signer) signPKCS7(doc []byte) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		return nil, fmt.Errorf("identity: pkcs7: %w", err)
	}
	// Per instance, not pkcs7.SetDefaultDigestAlgorithm, which is global.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("identity: pkcs7: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("identity: pkcs7: %w", err)
	}
	der, err = stripCertificates(der)
	if err != nil {
		return nil, fmt.Errorf("identity: pkcs7: %w", err)
	}
	return der, nil
}

// stripCertificates removes the certificates [0] field from a DER SignedData.
// AWS's signatures carry no certificate, so verifiers must supply it
// (-certfile); embedding ours would let a verifier that forgets to do so pass
// here and fail against real EC2. smallstep/pkcs7 v0.2.3 has no option to
// leave the signer out, so the field is dropped after the fact; the signature
// covers only the signed attributes, so it stays valid.
func stripCertificates(der []byte) ([]byte, error) {
	// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
	outer, err := elements(der, asn1.ClassUniversal, asn1.TagSequence)
	if err != nil {
		return nil, fmt.Errorf("ContentInfo: %w", err)
	}
	if len(outer) != 2 {
		return nil, fmt.Errorf("ContentInfo has %d fields, want 2", len(outer))
	}
	wrapped, err := elements(outer[1].FullBytes, asn1.ClassContextSpecific, 0)
	if err != nil || len(wrapped) != 1 {
		return nil, fmt.Errorf("ContentInfo content is not one explicit [0] value (err=%v)", err)
	}
	fields, err := elements(wrapped[0].FullBytes, asn1.ClassUniversal, asn1.TagSequence)
	if err != nil {
		return nil, fmt.Errorf("SignedData: %w", err)
	}
	var kept []byte
	for _, f := range fields {
		if f.Class == asn1.ClassContextSpecific && f.Tag == 0 { // certificates
			continue
		}
		kept = append(kept, f.FullBytes...)
	}
	signedData, err := constructed(asn1.ClassUniversal, asn1.TagSequence, kept)
	if err != nil {
		return nil, err
	}
	content, err := constructed(asn1.ClassContextSpecific, 0, signedData)
	if err != nil {
		return nil, err
	}
	return constructed(asn1.ClassUniversal, asn1.TagSequence, append(bytes.Clone(outer[0].FullBytes), content...))
}

// elements decodes der as one constructed value of the given class and tag
// and returns its children.
func elements(der []byte, class, tag int) ([]asn1.RawValue, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, errors.New("trailing data")
	}
	if v.Class != class || v.Tag != tag || !v.IsCompound {
		return nil, fmt.Errorf("got class %d tag %d, want constructed class %d tag %d", v.Class, v.Tag, class, tag)
	}
	var out []asn1.RawValue
	for body := v.Bytes; len(body) > 0; {
		var e asn1.RawValue
		if body, err = asn1.Unmarshal(body, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func constructed(class, tag int, body []byte) ([]byte, error) {
	return asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: true, Bytes: body})
}
