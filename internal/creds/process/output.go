package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// OutputError is a problem with what a credential_process printed. Its
// message describes the problem by field name, JSON type and byte offset and
// never quotes the output, which holds secrets.
type OutputError struct {
	// JSON is true when the output is not a JSON object at all.
	JSON bool
	// Reason explains the problem.
	Reason string
}

func (e *OutputError) Error() string {
	if e.JSON {
		return "invalid JSON: " + e.Reason
	}
	return "invalid credentials: " + e.Reason
}

func jsonError(format string, args ...any) error {
	return &OutputError{JSON: true, Reason: fmt.Sprintf(format, args...)}
}

func credsError(format string, args ...any) error {
	return &OutputError{Reason: fmt.Sprintf(format, args...)}
}

// ParseOutput parses what a credential_process printed:
//
//	{"Version": 1, "AccessKeyId": "ASIA…", "SecretAccessKey": "…",
//	 "SessionToken": "…", "Expiration": "2026-11-22T16:00:00Z"}
//
// Like the AWS CLI it matches keys exactly (case-sensitively), lets the last
// of duplicate keys win and ignores unknown keys (such as AccountId).
// Version must be the number 1; AccessKeyId and SecretAccessKey are required
// non-empty strings; SessionToken and Expiration are optional (absent, null
// or ""). Expiration is an RFC 3339 time, which must be after now; without it
// the credentials do not expire and Expiration is zero. LastUpdated is now.
//
// Errors are *OutputError and never contain any part of b.
func ParseOutput(b []byte, now time.Time) (ec2.Credentials, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		var se *json.SyntaxError
		switch {
		case len(bytes.TrimSpace(b)) == 0:
			return ec2.Credentials{}, jsonError("empty output")
		case errors.As(err, &se) && int(se.Offset) >= len(b):
			return ec2.Credentials{}, jsonError("unexpected end of input")
		case errors.As(err, &se):
			return ec2.Credentials{}, jsonError("syntax error at byte %d", se.Offset)
		case jsonType(b) != "object":
			return ec2.Credentials{}, jsonError("the output is a JSON %s, not an object", jsonType(b))
		default:
			// Not reached with encoding/json; its message may quote the input.
			return ec2.Credentials{}, jsonError("cannot decode the output")
		}
	}
	if m == nil {
		return ec2.Credentials{}, jsonError("the output is a JSON null, not an object")
	}

	v, ok := m["Version"]
	if !ok {
		return ec2.Credentials{}, credsError("Version is missing, want 1")
	}
	if t := jsonType(v); t != "number" {
		return ec2.Credentials{}, credsError("Version is a JSON %s, want the number 1", t)
	}
	if f, err := strconv.ParseFloat(string(v), 64); err != nil || f != 1 {
		n := string(v)
		if len(n) > 20 {
			n = n[:20] + "…"
		}
		return ec2.Credentials{}, credsError("Version is %s, want 1", n)
	}

	id, err := stringField(m, "AccessKeyId", true)
	if err != nil {
		return ec2.Credentials{}, err
	}
	secret, err := stringField(m, "SecretAccessKey", true)
	if err != nil {
		return ec2.Credentials{}, err
	}
	token, err := stringField(m, "SessionToken", false)
	if err != nil {
		return ec2.Credentials{}, err
	}
	expStr, err := stringField(m, "Expiration", false)
	if err != nil {
		return ec2.Credentials{}, err
	}
	c := ec2.Credentials{
		AccessKeyID:     id,
		SecretAccessKey: secret,
		SessionToken:    token,
		LastUpdated:     now.UTC().Truncate(time.Second),
	}
	if expStr != "" {
		exp, err := time.Parse(time.RFC3339, expStr)
		if err != nil {
			if looksLikeTime(expStr) {
				return ec2.Credentials{}, credsError("Expiration %q is not an RFC 3339 time such as 2006-01-02T15:04:05Z", expStr)
			}
			return ec2.Credentials{}, credsError("Expiration is not an RFC 3339 time such as 2006-01-02T15:04:05Z")
		}
		if !exp.After(now) {
			return ec2.Credentials{}, credsError("Expiration %s is in the past", exp.UTC().Format(time.RFC3339))
		}
		c.Expiration = exp.UTC()
	}
	return c, nil
}

// stringField returns the string at m[key]. A required field must be a
// non-empty string; an optional one may also be absent or null.
func stringField(m map[string]json.RawMessage, key string, required bool) (string, error) {
	raw, ok := m[key]
	if !ok {
		if required {
			return "", credsError("%s is missing", key)
		}
		return "", nil
	}
	switch t := jsonType(raw); {
	case t == "null" && !required:
		return "", nil
	case t != "string":
		return "", credsError("%s is a JSON %s, want a string", key, t)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", credsError("%s is not a valid JSON string", key) // not reached: raw was checked
	}
	if s == "" && required {
		return "", credsError("%s is empty", key)
	}
	return s, nil
}

// jsonType names the type of the JSON value raw, which json.Unmarshal
// accepted or rejected only for its type, by its first non-space byte.
func jsonType(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// looksLikeTime reports whether s is short and made only of characters found
// in timestamps, so that quoting it in an error cannot leak a secret.
func looksLikeTime(s string) bool {
	if len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c == '-', c == ':', c == '.', c == '+', c == ' ', c == 'T', c == 'Z', c == 't', c == 'z':
		default:
			return false
		}
	}
	return true
}
