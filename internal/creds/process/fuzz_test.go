package process

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		"", " ", "cmd", `/usr/bin/aws-vault export --format=json dev`, `'a b' "c d"`, `"a\"b\\c\d"`,
		`a\ b\\`, `'`, `"`, `\`, `a''b""c`, "x\ty\nz\r", `"über" 'naïve' # $HOME`,
	} {
		f.Add(s)
	}
	errRE := regexp.MustCompile(`^(unterminated (single|double) quote at offset \d+|backslash at the end \(offset \d+\) escapes nothing)$`)
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitCommand(s)
		if err != nil {
			if !errRE.MatchString(err.Error()) {
				t.Fatalf("SplitCommand(%q) error %q is not one of the fixed forms", s, err)
			}
			return
		}
		// Quoting the arguments back gives them again.
		again, err := SplitCommand(quote(args))
		if err != nil || !reflect.DeepEqual(again, args) {
			t.Fatalf("SplitCommand(%q) = %q, but SplitCommand(quote(…)) = %q, %v", s, args, again, err)
		}
		// Arguments only hold bytes of s: no more non-blank bytes than s has.
		n := 0
		for _, a := range args {
			n += len(a)
		}
		if n > len(s) {
			t.Fatalf("SplitCommand(%q) = %q is longer than its input", s, args)
		}
	})
}

func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{
		`{"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "` + marker + `", "SessionToken": "TOKENMARKER` + marker + `", "Expiration": "2026-11-22T16:00:00Z"}`,
		`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `"}`,
		`{"Version":2,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `"}`,
		`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `","Expiration":"2020-01-01T00:00:00Z"}`,
		`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `","Expiration":"` + marker + `"}`,
		`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker,
		`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":["` + marker + `"]}`,
		`{"Version":"` + marker + `"}`,
		`["` + marker + `"]`,
		marker,
		"{", "", "null", "1", `{"Version":1e0}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: the parser's injected clock only
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseOutput(b, now)
		if err == nil {
			if c.AccessKeyID == "" || c.SecretAccessKey == "" {
				t.Fatalf("ParseOutput(%q) = %+v with an empty key", b, c)
			}
			if !c.Expiration.IsZero() && !c.Expiration.After(now) {
				t.Fatalf("ParseOutput(%q) gave expired credentials", b)
			}
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "invalid JSON: ") && !strings.HasPrefix(msg, "invalid credentials: ") {
			t.Fatalf("ParseOutput(%q) error %q has no known prefix", b, msg)
		}
		if strings.Contains(msg, "SECRETMARKER") || strings.Contains(msg, "TOKENMARKER") {
			t.Fatalf("ParseOutput(%q) error %q shows the marker secret", b, msg)
		}
		// Whatever the secret fields hold, the error does not show them,
		// unless they are so short or plain (digits, a timestamp) that the
		// fixed text of an error or another field could hold them by chance.
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return
		}
		for _, k := range []string{"SecretAccessKey", "SessionToken"} {
			var v string
			if json.Unmarshal(m[k], &v) != nil || len(v) < 16 || looksLikeTime(v) {
				continue
			}
			if _, numErr := strconv.ParseFloat(v, 64); numErr == nil {
				continue
			}
			if strings.Contains(msg, v) {
				t.Fatalf("ParseOutput(%q) error %q shows %s", b, msg, k)
			}
		}
	})
}
