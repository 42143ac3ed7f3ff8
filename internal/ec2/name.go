package ec2

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength bounds an instance name, as DNS bounds a host name.
const MaxNameLength = 253

// CheckName reports whether name is a valid instance name: 1 to
// MaxNameLength ASCII letters, digits, '-', '_' and '.', starting with a
// letter, a digit or '_' (so that "." and ".." are no names, a name never
// looks like a command-line flag, and one can always be part of a URL path
// or a file name). It is the one definition of the grammar; every place
// where a name comes in (config file, admin API, command line, libvirt)
// checks it here. The error says what is wrong and quotes the name with
// control and bidirectional characters escaped.
func CheckName(name string) error {
	switch {
	case name == "":
		return Errorf(EINVALID, "the instance name must not be empty")
	case len(name) > MaxNameLength:
		return Errorf(EINVALID, "the instance name %s is %d bytes long; at most %d are allowed", QuoteName(name[:32]+"…"), len(name), MaxNameLength)
	case name == "." || name == "..":
		return Errorf(EINVALID, "%q is not an instance name", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isNameByte(c) && (i > 0 || (c != '-' && c != '.')) {
			continue
		}
		if i == 0 && (c == '-' || c == '.') {
			return Errorf(EINVALID, "the instance name %s must start with a letter, a digit or '_'", QuoteName(name))
		}
		r, _ := utf8.DecodeRuneInString(name[i:])
		return Errorf(EINVALID, "the instance name %s contains %s; names are letters, digits, '-', '_' and '.'", QuoteName(name), describeRune(r))
	}
	return nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

func describeRune(r rune) string {
	switch {
	case r == utf8.RuneError:
		return "a byte that is not UTF-8"
	case r == ' ':
		return "a space"
	case r == '/':
		return "a slash"
	case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || !unicode.IsPrint(r):
		return fmt.Sprintf("the control character %U", r)
	}
	return fmt.Sprintf("%q", r)
}

// QuoteName returns s in double quotes with every control, format (such as
// U+202E, which reverses the text after it) and invalid character escaped,
// for messages and logs that show a name, path or user agent that came
// from outside.
func QuoteName(s string) string {
	return strconv.QuoteToGraphic(s)
}

// Printable returns s unchanged when it holds only printable characters
// (spaces included), and otherwise s with each control, format or invalid
// character escaped as Go does (\x00, \u202e): for tables and other output
// that shows outside text unquoted, where such characters would move the
// cursor, hide text or reorder what the reader sees.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsGraphic(r) && r != ' ' || unicode.Is(unicode.Bidi_Control, r) || r == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	q = q[1 : len(q)-1]
	// QuoteToGraphic escapes quotes, which need none outside quotes.
	return strings.ReplaceAll(q, `\"`, `"`)
}
