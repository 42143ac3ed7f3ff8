package ec2

import (
	"strings"
	"testing"
	"time"
)

func TestFaultsStringRoundTrip(t *testing.T) {
	for _, f := range []Faults{
		{},
		{Latency: 100 * time.Millisecond},
		{Latency: 100 * time.Millisecond, LatencyMax: time.Second, ErrorRate: 0.2, ErrorStatus: 500, RateLimit: 10,
			Token: TokenRefuse, ExpiredCredentials: true, DropRate: 0.1},
		{RateLimit: 10, Burst: 5},
		{ErrorRate: 0.5, Token: TokenTimeout},
	} {
		got, err := ParseFaults(f.String())
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", f.String(), err)
			continue
		}
		if got.ErrorStatus == 503 && f.ErrorStatus == 0 {
			got.ErrorStatus = 0
		}
		if got != f {
			t.Errorf("ParseFaults(%q) = %+v, want %+v", f.String(), got, f)
		}
	}
	for _, bad := range []string{"nope=1", "latency=fast", "errors=2", "token=sometimes", "drop=-1", "errors=0.1×404", "expired-credentials=yes", "burst=5", "rate-limit=1,burst=many"} {
		if _, err := ParseFaults(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseFaults(%q) = %v, want one clear error", bad, err)
		}
	}
}

func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{"", "latency=1s", "latency=100ms-1s,errors=0.2×500,rate-limit=10/s,burst=5,token=refuse,expired-credentials,drop=0.1", "errors=0.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFaults(s)
		if err != nil {
			return
		}
		if got.Validate() != nil {
			t.Fatalf("ParseFaults(%q) accepted invalid faults %+v", s, got)
		}
		again, err := ParseFaults(got.String())
		if err != nil {
			t.Fatalf("the String of parsed faults %q does not parse: %v", got.String(), err)
		}
		if again.String() != got.String() {
			t.Fatalf("round trip changed %q to %q", got.String(), again.String())
		}
	})
}
