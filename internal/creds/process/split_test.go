package process

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: "  \t\n ", want: nil},
		{in: "cmd", want: []string{"cmd"}},
		{in: "  /usr/bin/fetch   --profile  dev \t", want: []string{"/usr/bin/fetch", "--profile", "dev"}},
		{in: "a\nb\rc\td", want: []string{"a", "b", "c", "d"}},
		{in: `'a b' "c d"`, want: []string{"a b", "c d"}},
		{in: `'it''s'`, want: []string{"its"}},
		{in: `"a"'b'c`, want: []string{"abc"}},
		{in: `a '' b ""`, want: []string{"a", "", "b", ""}},
		{in: `a''`, want: []string{"a"}},
		{in: `'$HOME \n "x"'`, want: []string{`$HOME \n "x"`}},
		{in: `"say \"hi\" \\ \$HOME \n 'x'"`, want: []string{`say "hi" \ \$HOME \n 'x'`}},
		{in: `a\ b c\\d \'e\" \#`, want: []string{"a b", `c\d`, `'e"`, "#"}},
		{in: `a\` + "\nb", want: []string{"a\nb"}},
		{in: `# not a comment`, want: []string{"#", "not", "a", "comment"}},
		{in: `*.txt ~ $(id) ; |`, want: []string{"*.txt", "~", "$(id)", ";", "|"}},
		{in: `"über" 'naïve'`, want: []string{"über", "naïve"}},
		{in: `'`, err: "unterminated single quote at offset 0"},
		{in: `cmd 'abc`, err: "unterminated single quote at offset 4"},
		{in: `cmd "abc`, err: "unterminated double quote at offset 4"},
		{in: `cmd "abc\"`, err: "unterminated double quote at offset 4"},
		{in: `cmd "abc\`, err: "unterminated double quote at offset 4"},
		{in: `cmd abc\`, err: "backslash at the end (offset 7) escapes nothing"},
	} {
		got, err := SplitCommand(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("SplitCommand(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// quote is the inverse of SplitCommand: single quotes around each argument.
func quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func TestSplitCommandRoundTrip(t *testing.T) {
	args := []string{"", "a b", `it's`, `"\`, "\n\t", "ü"}
	got, err := SplitCommand(quote(args))
	if err != nil || !reflect.DeepEqual(got, args) {
		t.Errorf("SplitCommand(quote(%q)) = %q, %v", args, got, err)
	}
}
