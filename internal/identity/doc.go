// Package identity signs EC2 instance identity documents the way EC2 does, so
// that software which checks the signature, pkcs7 and rsa2048 leaves before
// trusting a document can be exercised against imds instead of a real instance.
//
// The signing key is imds's own, never Amazon's: a verifier only accepts these
// signatures once it is given the certificate from Signer.CertificatePEM (what
// `imds ca cert` prints) in place of the AWS regional certificate. The key
// lives on disk so that the certificate a verifier was configured with keeps
// working across restarts of imds.
package identity
