package process

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// marker is a secret that must never show in an error.
const marker = "SECRETMARKERwJalrXUtnFEMIK7MDENGbPxRfiCY"

var testNow = time.Date(2026, 11, 22, 10, 0, 0, 500, time.UTC) // fixed instant: the parser's injected clock only

func TestParseOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want ec2.Credentials
	}{
		{"full", `{"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "` + marker + `", "SessionToken": "tok", "Expiration": "2026-11-22T16:00:00Z"}`,
			ec2.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: marker, SessionToken: "tok", Expiration: time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)}}, // fixed instant: parsed and compared
		{"no expiration, no token", `{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s"}`,
			ec2.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s"}},
		{"nulls and empties", `{"Version":1.0,"AccessKeyId":"AKIA","SecretAccessKey":"s","SessionToken":null,"Expiration":""}`,
			ec2.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "s"}},
		{"offset expiration, fractions", `{"Version":1e0,"AccessKeyId":"AKIA","SecretAccessKey":"s","Expiration":"2026-11-22T12:00:00.123+02:00"}`,
			ec2.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "s", Expiration: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)}}, // fixed instant: parsed and compared
		{"unknown fields, duplicates, whitespace", " \n{\"AccountId\":\"123456789012\",\"Extra\":{\"a\":[1]},\"Version\":1,\"AccessKeyId\":\"old\",\"AccessKeyId\":\"new\",\"SecretAccessKey\":\"s\",\"accesskeyid\":\"x\"}\n\n",
			ec2.Credentials{AccessKeyID: "new", SecretAccessKey: "s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOutput([]byte(tc.in), testNow)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.LastUpdated = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: parsed and compared
			if got != tc.want {
				t.Errorf("got %+v/%q/%q, want %+v/%q/%q", got, got.SecretAccessKey, got.SessionToken, tc.want, tc.want.SecretAccessKey, tc.want.SessionToken)
			}
		})
	}
}

func TestParseOutputErrors(t *testing.T) {
	const ok = `"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `"`
	for _, tc := range []struct {
		in, want string
		json     bool
	}{
		{"", "invalid JSON: empty output", true},
		{" \n", "invalid JSON: empty output", true},
		{"{", "invalid JSON: unexpected end of input", true},
		{`{"SecretAccessKey":"` + marker, "invalid JSON: unexpected end of input", true},
		{"not json", "invalid JSON: syntax error at byte 2", true},
		{`{"SecretAccessKey":"` + marker + "\x01\"}", "invalid JSON: syntax error at byte 61", true},
		{`{"Version":1,` + ok + `} {"x":1}`, "invalid JSON: syntax error at byte 97", true},
		{`["` + marker + `"]`, "invalid JSON: the output is a JSON array, not an object", true},
		{`"` + marker + `"`, "invalid JSON: the output is a JSON string, not an object", true},
		{`12`, "invalid JSON: the output is a JSON number, not an object", true},
		{`true`, "invalid JSON: the output is a JSON boolean, not an object", true},
		{`null`, "invalid JSON: the output is a JSON null, not an object", true},
		{`{` + ok + `}`, "invalid credentials: Version is missing, want 1", false},
		{`{"Version":2,` + ok + `}`, "invalid credentials: Version is 2, want 1", false},
		{`{"Version":1.5,` + ok + `}`, "invalid credentials: Version is 1.5, want 1", false},
		{`{"Version":123456789012345678901234567890,` + ok + `}`, "invalid credentials: Version is 12345678901234567890…, want 1", false},
		{`{"Version":"1",` + ok + `}`, "invalid credentials: Version is a JSON string, want the number 1", false},
		{`{"Version":true,` + ok + `}`, "invalid credentials: Version is a JSON boolean, want the number 1", false},
		{`{"Version":1,"SecretAccessKey":"` + marker + `"}`, "invalid credentials: AccessKeyId is missing", false},
		{`{"Version":1,"AccessKeyId":"AKIA"}`, "invalid credentials: SecretAccessKey is missing", false},
		{`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":""}`, "invalid credentials: SecretAccessKey is empty", false},
		{`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":null}`, "invalid credentials: SecretAccessKey is a JSON null, want a string", false},
		{`{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":["` + marker + `"]}`, "invalid credentials: SecretAccessKey is a JSON array, want a string", false},
		{`{"Version":1,"AccessKeyId":1234,"SecretAccessKey":"` + marker + `"}`, "invalid credentials: AccessKeyId is a JSON number, want a string", false},
		{`{"Version":1,` + ok + `,"SessionToken":{"t":"` + marker + `"}}`, "invalid credentials: SessionToken is a JSON object, want a string", false},
		{`{"Version":1,` + ok + `,"Expiration":1790000000}`, "invalid credentials: Expiration is a JSON number, want a string", false},
		{`{"Version":1,` + ok + `,"Expiration":"2026-11-22 16:00:00"}`, `invalid credentials: Expiration "2026-11-22 16:00:00" is not an RFC 3339 time such as 2006-01-02T15:04:05Z`, false},
		{`{"Version":1,` + ok + `,"Expiration":"` + marker + `"}`, `invalid credentials: Expiration is not an RFC 3339 time such as 2006-01-02T15:04:05Z`, false},
		{`{"Version":1,` + ok + `,"Expiration":"2026-11-22T09:00:00Z"}`, "invalid credentials: Expiration 2026-11-22T09:00:00Z is in the past", false},
		{`{"Version":1,` + ok + `,"Expiration":"2026-11-22T10:00:00Z"}`, "invalid credentials: Expiration 2026-11-22T10:00:00Z is in the past", false},
	} {
		_, err := ParseOutput([]byte(tc.in), testNow)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseOutput(%q) error = %v, want %q", tc.in, err, tc.want)
			continue
		}
		var oe *OutputError
		if !errors.As(err, &oe) || oe.JSON != tc.json {
			t.Errorf("ParseOutput(%q) error %#v, want *OutputError with JSON=%v", tc.in, err, tc.json)
		}
		if strings.Contains(err.Error(), "SECRETMARKER") {
			t.Errorf("ParseOutput(%q) error %q shows the secret", tc.in, err)
		}
	}
}
