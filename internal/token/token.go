package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"
)

// TTL bounds of the X-aws-ec2-metadata-token-ttl-seconds header, as on EC2.
const (
	MinTTL = 1
	MaxTTL = 21600
)

const (
	version  = 1
	nonceLen = 16
	macLen   = sha256.Size
	// payload: version (1) | expiry in unix milliseconds (8) | nonce
	payloadLen = 1 + 8 + nonceLen
	rawLen     = payloadLen + macLen
)

// EncodedLen is the length of every token string: padded standard base64
// of rawLen bytes (base64.StdEncoding.EncodedLen, as a constant).
const EncodedLen = (rawLen + 2) / 3 * 4

// Errors returned by Validate. Neither message contains the token.
var (
	ErrInvalid = errors.New("token is malformed, forged or for another instance")
	ErrExpired = errors.New("token has expired")
)

// Issuer issues and validates tokens. It is safe for concurrent use and takes
// no lock: its fields are read-only after NewIssuer.
type Issuer struct {
	// Now is the clock; tests replace it.
	Now  func() time.Time
	rand io.Reader
	key  [32]byte
	macs sync.Pool // of hash.Hash keyed with key
}

// NewIssuer returns an Issuer with a fresh secret read from rand, which is
// also the source of token nonces (crypto/rand.Reader in production).
func NewIssuer(rand io.Reader) (*Issuer, error) {
	i := &Issuer{Now: time.Now, rand: rand}
	if _, err := io.ReadFull(rand, i.key[:]); err != nil {
		return nil, fmt.Errorf("token: reading secret: %w", err)
	}
	return i, nil
}

// Issue returns a token for scope valid for ttl seconds.
func (i *Issuer) Issue(scope string, ttl int) (string, error) {
	if ttl < MinTTL || ttl > MaxTTL {
		return "", fmt.Errorf("token: ttl %d out of range %d-%d", ttl, MinTTL, MaxTTL)
	}
	var raw [rawLen]byte
	raw[0] = version
	exp := i.Now().Add(time.Duration(ttl) * time.Second).UnixMilli()
	binary.BigEndian.PutUint64(raw[1:9], uint64(exp))
	if _, err := io.ReadFull(i.rand, raw[9:payloadLen]); err != nil {
		return "", fmt.Errorf("token: reading nonce: %w", err)
	}
	i.sign(raw[payloadLen:payloadLen], raw[:payloadLen], scope)
	return base64.StdEncoding.EncodeToString(raw[:]), nil
}

// Validate checks tok for scope and returns the time it has left. It returns
// ErrInvalid for anything not issued by this Issuer for this scope and
// ErrExpired for a genuine token past its expiry.
func (i *Issuer) Validate(tok, scope string) (time.Duration, error) {
	if len(tok) != EncodedLen {
		return 0, ErrInvalid
	}
	var raw [rawLen]byte
	n, err := base64.StdEncoding.Decode(raw[:], []byte(tok))
	if err != nil || n != rawLen || raw[0] != version {
		return 0, ErrInvalid
	}
	var want [macLen]byte
	i.sign(want[:0], raw[:payloadLen], scope)
	if !hmac.Equal(want[:], raw[payloadLen:]) {
		return 0, ErrInvalid
	}
	exp := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[1:9])))
	left := exp.Sub(i.Now())
	if left <= 0 {
		return 0, ErrExpired
	}
	return left, nil
}

// sign appends HMAC(key, payload || 0 || scope) to dst. Keyed HMAC states
// are pooled: the pool is per-P, so validation shares no lock across requests.
func (i *Issuer) sign(dst, payload []byte, scope string) []byte {
	m, _ := i.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, i.key[:])
	}
	m.Reset()
	m.Write(payload)
	m.Write([]byte{0})
	m.Write([]byte(scope))
	out := m.Sum(dst)
	i.macs.Put(m)
	return out
}

// ParseTTL parses the value of the X-aws-ec2-metadata-token-ttl-seconds
// header: a decimal integer from MinTTL to MaxTTL, nothing else (no sign, no
// spaces, no leading "+"). Leading zeros are accepted as by strconv.
func ParseTTL(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing token TTL")
	}
	if len(s) > 10 {
		return 0, fmt.Errorf("token TTL %.10q… is too long", s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("token TTL %q is not a whole number of seconds", s)
		}
		n = n*10 + int(c-'0')
	}
	if n < MinTTL || n > MaxTTL {
		return 0, fmt.Errorf("token TTL %d is outside %d-%d seconds", n, MinTTL, MaxTTL)
	}
	return n, nil
}

// RemainingSeconds renders the time a token has left as the whole seconds
// EC2 reports in X-aws-ec2-metadata-token-ttl-seconds, rounded up so that a
// valid token never reports 0.
func RemainingSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
