package process

import "fmt"

// SplitCommand splits a credential_process string into argv the way the AWS
// CLI does on Linux and macOS (Python's shlex.split in POSIX mode):
//
//   - spaces, tabs, carriage returns and newlines separate arguments;
//   - single quotes keep everything up to the next single quote literally;
//   - double quotes keep everything up to the next unescaped double quote,
//     where a backslash escapes only " and \ (other backslashes stay);
//   - outside quotes, a backslash makes the next character literal;
//   - quoted parts join adjacent text ("a"'b'c is abc), and "" or ” is an
//     empty argument;
//   - # is an ordinary character: there are no comments, and nothing else
//     ($, `, globs, ~) is expanded.
//
// An empty or blank string gives no arguments and no error. Errors (an
// unterminated quote, a trailing backslash) give a byte offset but never
// show the command, whose arguments may hold secrets.
func SplitCommand(s string) ([]string, error) {
	var (
		args   []string
		tok    []byte
		inTok  bool // tok is an argument even if empty (it had quotes)
		quote  byte // ' or " while inside quotes
		qstart int  // offset of the opening quote
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				tok = append(tok, c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				tok = append(tok, s[i])
			case c == '\\' && i+1 == len(s):
				// shlex reports the missing quote, not the escape.
				return nil, fmt.Errorf("unterminated double quote at offset %d", qstart)
			default:
				tok = append(tok, c)
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inTok {
				args = append(args, string(tok))
				tok, inTok = tok[:0], false
			}
		case c == '\'' || c == '"':
			quote, qstart, inTok = c, i, true
		case c == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("backslash at the end (offset %d) escapes nothing", i)
			}
			i++
			tok, inTok = append(tok, s[i]), true
		default:
			tok, inTok = append(tok, c), true
		}
	}
	switch quote {
	case '\'':
		return nil, fmt.Errorf("unterminated single quote at offset %d", qstart)
	case '"':
		return nil, fmt.Errorf("unterminated double quote at offset %d", qstart)
	}
	if inTok {
		args = append(args, string(tok))
	}
	return args, nil
}
