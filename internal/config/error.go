package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a config file. Parse, Load and BuildInstance
// return every problem they find as *Error values joined with errors.Join, so
// that a user fixes the whole file in one round; use errors.As, or
// Unwrap() []error on the joined error, to get at each.
type Error struct {
	File string // the name given to Parse, or the path given to Load
	// Line is 1-based; 0 when the problem is not tied to a line (the file
	// could not be read at all).
	Line int
	// Field is the dotted path of the key, e.g. instance.network_interfaces[0].mac;
	// empty for problems of the file as a whole (syntax, top level).
	Field   string
	Problem string
}

// Error formats the problem as FILE:LINE: FIELD: PROBLEM, the form editors and
// CI logs turn into links; empty parts are left out.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// joinErrors orders the problems as they appear in the file, whatever stage
// found them, and joins them; nil when there are none.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
