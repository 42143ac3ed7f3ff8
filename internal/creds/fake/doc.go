// Package fake provides rotating fake credentials that look and age like the
// ones EC2 hands out for an instance profile.
//
// Key IDs start with ASIA, secrets are 40 characters and session tokens are
// long base64 strings beginning like real STS tokens. Each set is put in
// place RotateAfter after the previous one and expires Lifetime after it was
// put in place, so clients always see an Expiration far beyond the SDKs'
// refresh windows and new credentials well before the old ones expire.
package fake
