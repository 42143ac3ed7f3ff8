package admin

import (
	"net/http"

	"github.com/imdsdev/imds/internal/ec2"
)

// codes is the one table mapping application error codes to the admin API's
// HTTP statuses; handlers never choose a status themselves. The client reads
// it backwards when a response carries no error body.
var codes = map[string]int{
	ec2.EINVALID:      http.StatusBadRequest,
	ec2.EUNAUTHORIZED: http.StatusUnauthorized,
	ec2.EFORBIDDEN:    http.StatusForbidden,
	ec2.ENOTFOUND:     http.StatusNotFound,
	ec2.EMETHOD:       http.StatusMethodNotAllowed,
	ec2.ECONFLICT:     http.StatusConflict,
	ec2.ETHROTTLED:    http.StatusTooManyRequests,
	ec2.EINTERNAL:     http.StatusInternalServerError,
	ec2.EUNSUPPORTED:  http.StatusNotImplemented,
	ec2.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

// StatusOf returns the HTTP status of an error code; an unknown code is an
// internal error.
func StatusOf(code string) int {
	if status, ok := codes[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// codeOf returns the error code of an HTTP status, for responses that carry
// no error body (a proxy, or a server that is not imds).
func codeOf(status int) string {
	for code, s := range codes {
		if s == status {
			return code
		}
	}
	return ec2.EINTERNAL
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// internalMessage replaces the message of every error that is not an
// *ec2.Error with a known code, so that internals never reach the caller.
const internalMessage = "Internal error."
