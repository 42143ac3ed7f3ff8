package ec2

import (
	"regexp"
	"testing"
)

// formatChecks are the hand-written checks of Validate and the patterns
// they stand for.
var formatChecks = []struct {
	name    string
	check   func(string) bool
	pattern *regexp.Regexp
}{
	{"isInstanceID", isInstanceID, regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)},
	{"isAccountID", isAccountID, regexp.MustCompile(`^[0-9]{12}$`)},
	{"isMAC", isMAC, regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)},
	{"isPrefixedID", isPrefixedID, regexp.MustCompile(`^[a-z]+-[0-9a-f]{8,17}$`)},
	{"isInstanceType", isInstanceType, regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+$`)},
	{"isRegion", isRegion, regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)},
}

var formatSamples = []string{
	"", "i-", "i-0123abcd", "i-0123abcdef0123456", "i-0123ABCD", "i-0123abcdef012345", "x-0123abcd", "i-0123abcd\n",
	"123456789012", "12345678901", "1234567890123", "12345678901a",
	"02:00:00:00:00:07", "02:00:00:00:00:0G", "02-00-00-00-00-07", "02:00:00:00:00:07:", "0:00:00:00:00:077",
	"eni-0123abcd", "eni-0123456789abcdef0", "eni-0123456789abcdef01", "-0123abcd", "Eni-0123abcd", "eni-0123abc", "sg-0123abcd-1",
	"us-east-1", "us-gov-west-1", "eu-west-", "eu--1", "e-west-1", "eu-1", "EU-west-1", "eu-west-1a", "eu-west-12", "use-west-1", "eu-wEst-1",
	"t3.small", "t3.", ".small", "t3.small.x", "T3.small", "m5d-x.2xlarge", "t3..small", "a.b",
}

func TestFormatChecks(t *testing.T) {
	for _, c := range formatChecks {
		for _, s := range formatSamples {
			if got, want := c.check(s), c.pattern.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v; the pattern %s says %v", c.name, s, got, c.pattern, want)
			}
		}
	}
}

func FuzzFormatChecks(f *testing.F) {
	for _, s := range formatSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range formatChecks {
			if got, want := c.check(s), c.pattern.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v; the pattern %s says %v", c.name, s, got, c.pattern, want)
			}
		}
	})
}
