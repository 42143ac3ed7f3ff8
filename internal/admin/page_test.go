package admin

import (
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// FuzzPageQuery: the limit and continue parameters of a list are accepted
// only in range and as tokens of a name, and a token made of a name gives
// that name back.
func FuzzPageQuery(f *testing.F) {
	for _, s := range [][2]string{{"10", ""}, {"1", ContinueToken("vm-1")}, {"0", "x"}, {"10001", ""}, {"-1", "dm0tMQ"}, {"5", "***"}, {"5", "=="}} {
		f.Add(s[0], s[1], true, s[1] != "")
	}
	f.Fuzz(func(t *testing.T, limit, token string, hasLimit, hasToken bool) {
		n, after, err := pageQuery(limit, token, hasLimit, hasToken)
		if err != nil {
			if ec2.ErrorCode(err) != ec2.EINVALID || !strings.HasPrefix(ec2.ErrorMessage(err), "limit: ") && !strings.HasPrefix(ec2.ErrorMessage(err), "continue: ") {
				t.Fatalf("error %v: want EINVALID naming limit or continue", err)
			}
			return
		}
		if hasLimit && (n < 1 || n > MaxPageSize) || !hasLimit && n != 0 {
			t.Fatalf("limit %q (%v) gave %d", limit, hasLimit, n)
		}
		if hasToken {
			if ec2.CheckName(after) != nil {
				t.Fatalf("token %q gave %q, not a name", token, after)
			}
			if n2, again, err := pageQuery(limit, ContinueToken(after), hasLimit, true); err != nil || again != after || n2 != n {
				t.Fatalf("the token of %q gave %q, %v", after, again, err)
			}
		} else if after != "" {
			t.Fatalf("no token gave %q", after)
		}
	})
}
