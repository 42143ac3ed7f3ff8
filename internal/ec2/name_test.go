package ec2

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"web-1", "default", "a", "_x", "db.prod", "VM_01", "1", strings.Repeat("a", MaxNameLength)} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
	}
	for name, want := range map[string]string{
		"":                                   "must not be empty",
		".":                                  `"." is not an instance name`,
		"..":                                 `".." is not an instance name`,
		".hidden":                            "must start with",
		"-rf":                                "must start with",
		"a/b":                                "contains a slash",
		"a b":                                "contains a space",
		"nul\x00":                            `contains the control character U+0000`,
		"evil\u202egnp.exe":                  `"evil\u202egnp.exe" contains the control character U+202E`,
		"tab\t":                              "U+0009",
		"caf\u00e9":                          `contains 'é'`,
		"\xff":                               "not UTF-8",
		strings.Repeat("a", MaxNameLength+1): "254 bytes long",
	} {
		err := CheckName(name)
		if err == nil {
			t.Errorf("CheckName(%q) accepted it", name)
			continue
		}
		if ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%q) = %v (%s), want EINVALID containing %q", name, err, ErrorCode(err), want)
		}
		if strings.ContainsAny(err.Error(), "\x00\u202e\t") {
			t.Errorf("CheckName(%q): the message holds the raw control character: %q", name, err.Error())
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"web-1":            "web-1",
		"two words":        "two words",
		`say "hi"`:         `say "hi"`,
		"caf\u00e9":        "caf\u00e9",
		"a\x00b":           `a\x00b`,
		"evil\u202etxt":    `evil\u202etxt`,
		"\x1b[31mred":      `\x1b[31mred`,
		"col\tumn":         `col\tumn`,
		`back\slash\x00`:   `back\\slash\\x00`,
		"bad\xffbyte":      `bad\xffbyte`,
		"line\nbreak":      `line\nbreak`,
		"zero\u200bwidth!": `zero\u200bwidth!`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCheckName: an accepted name is plain ASCII of the grammar, and
// Printable never lets a control or format character through.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"web-1", ".", "..", "a\x00", "x\u202ey", "", "-a", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckName(s) == nil {
			if s == "." || s == ".." || len(s) == 0 || len(s) > MaxNameLength {
				t.Fatalf("accepted %q", s)
			}
			for i := 0; i < len(s); i++ {
				if !isNameByte(s[i]) {
					t.Fatalf("accepted %q with byte %#x", s, s[i])
				}
			}
		}
		for _, r := range Printable(s) {
			if r < 0x20 || r == 0x7f || r == '\u202e' || r == '\u2066' {
				t.Fatalf("Printable(%q) holds %U", s, r)
			}
		}
	})
}
