package ec2

import (
	"errors"
	"fmt"
)

// Application error codes. Each transport maps them to its own status codes in
// exactly one table; handlers never choose a status themselves.
const (
	ECONFLICT     = "conflict"      // the request conflicts with the current state
	EINTERNAL     = "internal"      // a bug or an unexpected failure; details stay server-side
	EINVALID      = "invalid"       // the input is malformed or out of range
	ENOTFOUND     = "not_found"     // the thing asked for does not exist
	EUNAUTHORIZED = "unauthorized"  // missing, invalid or expired credentials (IMDSv2 token)
	EFORBIDDEN    = "forbidden"     // the request is understood but not allowed
	EMETHOD       = "method"        // the method is not allowed on this resource
	EUNAVAILABLE  = "unavailable"   // a dependency is temporarily unable to serve
	ETHROTTLED    = "throttled"     // the caller sent too many requests
	EUNSUPPORTED  = "not_supported" // the feature is not available here
)

// Error is the one application error type. Its Message is safe to show to the
// user who caused it; it never holds secrets.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("imds error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, and a
// generic message for any other error so that internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
