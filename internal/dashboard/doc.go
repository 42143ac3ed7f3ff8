// Package dashboard is the web dashboard of imds: an http.Handler serving
// hand-written pages embedded in the binary, which talk to a running server
// only through its admin API (an admin.Client).
//
// A browser gets a session by exchanging a login token (one-time for
// `imds dashboard`, the admin token on the admin TCP listener) for a cookie
// (HttpOnly, SameSite=Strict). Every state change carries the session's
// CSRF token in a header and a matching Origin; Host names that could come
// from DNS rebinding are refused. Secrets never reach the browser:
// credential documents are masked by the admin API, and user-data is shown
// by its size only.
package dashboard
