package ec2

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxRecordedField is the most bytes of a field a client controls (path,
// user agent, method) that a RequestRecord or the access log keeps; the
// rest is cut and replaced by a mark that says how much was cut (see
// TruncateField).
const MaxRecordedField = 512

// TruncateField returns s if it fits MaxRecordedField, and otherwise its
// first MaxRecordedField bytes (cut at a character boundary) followed by
// "…[+N bytes]", N being the bytes cut. The result is a copy, so that it does
// not pin the request's memory.
func TruncateField(s string) string {
	if len(s) <= MaxRecordedField {
		return s
	}
	n := MaxRecordedField
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…[+" + strconv.Itoa(len(s)-n) + " bytes]"
}

// RequestRecord is one metadata request as the audit keeps it. It holds no
// tokens, credentials or bodies; the fields a client controls are cut to
// MaxRecordedField bytes.
type RequestRecord struct {
	Time      time.Time
	Instance  string // "" when the requester matched no instance
	Remote    string // address:port of the requester
	Method    string
	Path      string
	Status    int
	API       string // v1 or v2
	Latency   time.Duration
	UserAgent string
	// Fault names the fault injected into this request, if any.
	Fault string
	// Category is what was asked for: one of the Category constants.
	Category string
}

// Categories of metadata requests, for metrics: what an application asked
// for, in the few classes an operator cares about.
const (
	CategoryCredentials = "credentials" // a role's (or the instance identity's) credentials
	CategoryIdentity    = "identity"    // the identity document and its signatures
	CategoryUserData    = "user-data"
	CategoryListing     = "listing" // a directory listing, the version list included
	CategoryToken       = "token"   // PUT /latest/api/token
	CategoryOther       = "other"
)

// Categories lists the categories in a fixed order.
func Categories() []string {
	return []string{CategoryCredentials, CategoryIdentity, CategoryUserData, CategoryListing, CategoryToken, CategoryOther}
}

// RequestReport summarises what an application asked an instance for.
type RequestReport struct {
	Instance    string
	Requests    int
	V1Requests  int // requests without a token: what breaks under IMDSv2-only
	V2Requests  int
	Errors      int // status >= 400
	First, Last time.Time
	Paths       []PathUse // most used first
	UserAgents  []AgentUse
}

// PathUse counts the requests for one path (version prefix kept).
type PathUse struct {
	Path     string
	Requests int
	V1       int
}

// AgentUse counts the requests of one user agent and how many were IMDSv1.
type AgentUse struct {
	UserAgent string
	Requests  int
	V1        int
}

// RequestLog is the record of recent requests per instance.
type RequestLog interface {
	// Requests returns up to limit of the most recent requests of instance
	// (every instance when instance is ""), oldest first.
	Requests(ctx context.Context, instance string, limit int) ([]RequestRecord, error)
	// Follow streams requests of instance ("" for all) as they happen until
	// ctx is done; the channel is closed then. A slow reader misses records
	// rather than slowing the server.
	Follow(ctx context.Context, instance string) <-chan RequestRecord
	// Report summarises the recorded requests of instance. Returns
	// ENOTFOUND if nothing was recorded for it.
	Report(ctx context.Context, instance string) (RequestReport, error)
}
