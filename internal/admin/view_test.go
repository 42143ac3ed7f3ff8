package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

func TestMaskSecrets(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		want       string
		wantMasked bool
	}{
		{"credentials", `{"Code" : "Success", "AccessKeyId" : "ASIA1", "SecretAccessKey" : "s3cr3t", "Token" : "t0k3n"}`,
			"{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"ASIA1\",\n  \"SecretAccessKey\" : \"********\",\n  \"Token\" : \"********\"\n}", true},
		{"no secret", `{"a": 1}`, `{"a": 1}`, false},
		{"text", "i-0123", "i-0123", false},
		{"not JSON", `{"SecretAccessKey": `, `{"SecretAccessKey": `, false},
		{"nested value kept whole", `{"Token": {"x": "y"}}`, "{\n  \"Token\" : \"********\"\n}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, masked := MaskSecrets([]byte(tt.body))
			if got != tt.want || masked != tt.wantMasked {
				t.Errorf("MaskSecrets = %q, %v, want %q, %v", got, masked, tt.want, tt.wantMasked)
			}
		})
	}
}

func FuzzMaskSecrets(f *testing.F) {
	f.Add([]byte(`{"SecretAccessKey": "abc", "Token": "def"}`))
	f.Add([]byte(`{"a": [1, 2], "Token": null}`))
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, masked := MaskSecrets(body)
		if !masked && got != string(body) {
			t.Fatalf("unmasked output %q differs from the input %q", got, body)
		}
		if masked && (strings.Contains(got, `"SecretAccessKey" : "`) && !strings.Contains(got, `"SecretAccessKey" : "`+Masked+`"`)) {
			t.Fatalf("SecretAccessKey left in %q", got)
		}
	})
}

func TestUnknownRequesters(t *testing.T) {
	// fixed instant: the grouping does not depend on the date
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []ec2.RequestRecord{
		{Time: t0, Instance: "", Remote: "10.0.0.7:4000", Path: "/latest/meta-data/", UserAgent: "curl"},
		{Time: t0.Add(time.Second), Instance: "web-1", Remote: "10.0.0.1:4000"},
		{Time: t0.Add(2 * time.Second), Instance: "", Remote: "10.0.0.7:4001", Path: "/latest/api/token", UserAgent: "sdk"},
		{Time: t0.Add(3 * time.Second), Instance: "", Remote: "[fd00::9]:80", Path: "/", UserAgent: "x"},
	}
	got := unknownRequesters(recs)
	if len(got) != 2 {
		t.Fatalf("unknownRequesters = %+v, want 2 requesters", got)
	}
	if got[0].Address != "fd00::9" || got[1].Address != "10.0.0.7" || got[1].Requests != 2 || got[1].LastPath != "/latest/api/token" || got[1].UserAgent != "sdk" {
		t.Errorf("unknownRequesters = %+v", got)
	}
}
