// Package token issues and validates IMDSv2 session tokens.
//
// Tokens are stateless: each carries its expiry and a random nonce, and an
// HMAC-SHA256 over them and the instance scope, keyed with a per-server secret.
// Validation therefore needs no shared table and no lock, a token cannot be
// forged without the secret, and a token issued to one instance is refused by
// every other (the scope is part of the MAC but not of the token).
package token
