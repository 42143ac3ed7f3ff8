package token

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTTL(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"1", 1, false},
		{"21600", 21600, false},
		{"300", 300, false},
		{"0021600", 21600, false},
		{"", 0, true},
		{"0", 0, true},
		{"21601", 0, true},
		{"-1", 0, true},
		{"+5", 0, true},
		{" 5", 0, true},
		{"5 ", 0, true},
		{"1.5", 0, true},
		{"1e3", 0, true},
		{"abc", 0, true},
		{"99999999999999999999", 0, true},
	} {
		got, err := ParseTTL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTTL(%q)=%d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"1", "21600", "0", "-1", "1.5", "", "9999999999", "00001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseTTL(s)
		if err == nil && (n < MinTTL || n > MaxTTL) {
			t.Fatalf("ParseTTL(%q)=%d accepted out of range", s, n)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error for %q", s)
		}
	})
}

func TestIssueValidate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: the issuer's injected clock only
	iss, err := NewIssuer(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss.Now = func() time.Time { return now }
	tok, err := iss.Issue("a", 60)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != EncodedLen {
		t.Errorf("len=%d, want %d", len(tok), EncodedLen)
	}
	if left, err := iss.Validate(tok, "a"); err != nil || left != 60*time.Second {
		t.Errorf("Validate=%v, %v; want 60s, nil", left, err)
	}
	if _, err := iss.Validate(tok, "b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("other scope: err=%v, want ErrInvalid", err)
	}
	other, _ := NewIssuer(rand.Reader)
	other.Now = iss.Now
	if _, err := other.Validate(tok, "a"); !errors.Is(err, ErrInvalid) {
		t.Errorf("other server secret: err=%v, want ErrInvalid", err)
	}
	// Flip each character: every alteration must be refused.
	for i := range tok {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := iss.Validate(string(b), "a"); err == nil {
			t.Errorf("altered token at %d accepted", i)
		}
	}
	now = now.Add(60 * time.Second)
	if _, err := iss.Validate(tok, "a"); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: err=%v, want ErrExpired", err)
	}
	if _, err := iss.Issue("a", 0); err == nil {
		t.Error("Issue with ttl 0 succeeded")
	}
	t2, _ := iss.Issue("a", 60)
	t3, _ := iss.Issue("a", 60)
	if t2 == t3 {
		t.Error("two tokens issued at the same instant are equal")
	}
}

func TestRemainingSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {21600 * time.Second, 21600}} {
		if got := RemainingSeconds(tt.d); got != tt.want {
			t.Errorf("RemainingSeconds(%v)=%d, want %d", tt.d, got, tt.want)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	iss, _ := NewIssuer(rand.Reader)
	tok, _ := iss.Issue("default\x00i-0123456789abcdef0", 21600)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := iss.Validate(tok, "default\x00i-0123456789abcdef0"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
