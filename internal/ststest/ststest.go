package ststest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	// Namespace is the XML namespace of every STS answer.
	Namespace = "https://sts.amazonaws.com/doc/2011-06-15/"
	// APIVersion is the only Version the Server accepts.
	APIVersion = "2011-06-15"
	// DefaultAccount is the account of the Server's callers and of role ARNs
	// that do not name one.
	DefaultAccount = "123456789012"
	// DefaultDurationSeconds is the lifetime of AssumeRole credentials when
	// the request sets no DurationSeconds, as in STS.
	DefaultDurationSeconds = 3600
	// MinDurationSeconds and MaxDurationSeconds bound DurationSeconds.
	MinDurationSeconds = 900
	MaxDurationSeconds = 43200
)

// Request is what the Server recorded of an AssumeRole request.
type Request struct {
	RoleARN         string
	RoleSessionName string
	ExternalID      string
	// DurationSeconds is 0 when the request did not set it.
	DurationSeconds int
	// AccessKeyID is the key named in the SigV4 credential scope.
	AccessKeyID string
	// SessionToken is the X-Amz-Security-Token header ("" without one).
	SessionToken string
	// Region is the region of the SigV4 credential scope.
	Region string
	// SignatureVerified is true when the key was known and the signature
	// was checked cryptographically (and matched).
	SignatureVerified bool
}

// Server is a loopback STS. Set its exported fields right after NewServer,
// before any request; change behaviour while requests may be in flight only
// through its methods, which are safe for concurrent use.
type Server struct {
	// Now is the clock that credential expirations are computed from.
	Now func() time.Time
	// Account is the account of callers whose key the Server did not issue.
	Account string
	// AllowedRoleARN, if set, is the only role that AssumeRole grants;
	// others get AccessDenied.
	AllowedRoleARN string
	// RequiredExternalID, if set, must be the ExternalId of AssumeRole, or
	// the answer is AccessDenied (as when a trust policy requires one).
	RequiredExternalID string

	srv *httptest.Server

	mu     sync.Mutex
	calls  int
	last   Request
	outage bool
	denied bool
	keys   map[string]key
	// skewChecked is set once the first signed request was checked.
	skewChecked bool
}

// key is a secret the Server knows, either registered or issued.
type key struct {
	secret string
	// For issued keys: the session token that must accompany the key, when
	// it expires and whose it is.
	token       string
	expiration  time.Time
	arn, userID string
}

// NewServer starts a Server on 127.0.0.1 and closes it when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{Now: time.Now, Account: DefaultAccount, keys: map[string]key{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.Close)
	return s
}

// URL is the base URL of the Server, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the Server down; it is safe to call more than once.
func (s *Server) Close() { s.srv.Close() }

// Calls returns how many AssumeRole requests have arrived, whatever the
// answer (success, error or outage).
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// LastRequest returns the most recent AssumeRole request (the zero Request
// before the first).
func (s *Server) LastRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// SetOutage makes every request fail with 503 ServiceUnavailable (an STS
// error document, which the SDKs treat as retryable) while on is true. The
// connection stays open; requests are still counted and recorded.
func (s *Server) SetOutage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
}

// SetDenied makes every AssumeRole fail with 403 AccessDenied while on is true.
func (s *Server) SetDenied(on bool) {
	s.mu.Lock()
	s.denied = on
	s.mu.Unlock()
}

// AddKey registers an access key and its secret: requests signed with it are
// then verified cryptographically and fail with SignatureDoesNotMatch when
// signed with another secret.
func (s *Server) AddKey(accessKeyID, secretAccessKey string) {
	s.mu.Lock()
	s.keys[accessKeyID] = key{secret: secretAccessKey}
	s.mu.Unlock()
}

// apiError is an STS error answer.
type apiError struct {
	status        int
	typ           string // Sender or Receiver
	code, message string
}

func senderError(status int, code, msg string) *apiError {
	return &apiError{status: status, typ: "Sender", code: code, message: msg}
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newUUID()
	w.Header().Set("X-Amzn-Requestid", reqID)
	resp, aerr := s.handle(r)
	if aerr != nil {
		writeXML(w, aerr.status, errorResponse{
			Xmlns:     Namespace,
			Error:     errorBody{Type: aerr.typ, Code: aerr.code, Message: aerr.message},
			RequestID: reqID,
		})
		return
	}
	switch v := resp.(type) {
	case *assumeRoleResponse:
		v.RequestID = reqID
	case *getCallerIdentityResponse:
		v.RequestID = reqID
	}
	writeXML(w, http.StatusOK, resp)
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) handle(r *http.Request) (any, *apiError) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, senderError(http.StatusBadRequest, "InvalidAction", "ststest serves only POST / (the query protocol of the AWS SDKs)")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, senderError(http.StatusBadRequest, "MalformedInput", "cannot read the request body")
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, senderError(http.StatusBadRequest, "InvalidParameterValue", "Content-Type must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, senderError(http.StatusBadRequest, "MalformedInput", "the request body is not a valid form")
	}
	auth, authProblem := parseAuthorization(r.Header.Get("Authorization"))
	action := form.Get("Action")

	s.mu.Lock()
	defer s.mu.Unlock()
	if action == "AssumeRole" {
		s.calls++
		s.last = Request{
			RoleARN:         form.Get("RoleArn"),
			RoleSessionName: form.Get("RoleSessionName"),
			ExternalID:      form.Get("ExternalId"),
			AccessKeyID:     auth.accessKeyID,
			SessionToken:    r.Header.Get("X-Amz-Security-Token"),
			Region:          auth.region,
		}
		s.last.DurationSeconds, _ = strconv.Atoi(form.Get("DurationSeconds"))
	}
	if s.outage {
		return nil, &apiError{status: http.StatusServiceUnavailable, typ: "Receiver", code: "ServiceUnavailable", message: "Service is unavailable. Please try again later."}
	}

	caller, verified, aerr := s.authenticate(r, auth, authProblem, body)
	if aerr != nil {
		return nil, aerr
	}
	if action == "AssumeRole" {
		s.last.SignatureVerified = verified
	}
	if v := form.Get("Version"); v != APIVersion {
		return nil, senderError(http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", action, v))
	}
	switch action {
	case "AssumeRole":
		return s.assumeRole(form, caller)
	case "GetCallerIdentity":
		return &getCallerIdentityResponse{Xmlns: Namespace, Result: callerIdentity{
			Arn: caller.arn, UserID: caller.userID, Account: accountOf(caller.arn),
		}}, nil
	case "":
		return nil, senderError(http.StatusBadRequest, "MissingAction", "Missing Action")
	default:
		return nil, senderError(http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", action, APIVersion))
	}
}

// maxSkew is how far a request's signing time may be from STS's clock.
const maxSkew = 15 * time.Minute

// checkSkew refuses a request signed more than 15 minutes away from s.now(),
// with STS's own words (s.mu held). The SDKs sign with the real clock, so a
// test whose stand-in clock starts at a date far from today fails here at
// once, on any day, instead of passing until the SDK's own expiry checks
// catch up with it. Only the first signed request is checked: afterwards a
// test may advance Now to play hours passing while the SDK, which cannot
// be given a clock, keeps signing with the real one.
func (s *Server) checkSkew(amzDate string) *apiError {
	if s.skewChecked {
		return nil
	}
	const layout = "20060102T150405Z"
	signed, err := time.Parse(layout, amzDate)
	if err != nil {
		return senderError(http.StatusBadRequest, "IncompleteSignature", "X-Amz-Date '"+amzDate+"' is not in the form "+layout)
	}
	s.skewChecked = true
	now := s.now().UTC()
	switch {
	case signed.Before(now.Add(-maxSkew)):
		return senderError(http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			amzDate, now.Add(-maxSkew).Format(layout), now.Format(layout)))
	case signed.After(now.Add(maxSkew)):
		return senderError(http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			amzDate, now.Add(maxSkew).Format(layout), now.Format(layout)))
	}
	return nil
}

// authenticate checks the SigV4 header (s.mu held) and returns who signed.
func (s *Server) authenticate(r *http.Request, a authorization, problem string, body []byte) (caller key, verified bool, _ *apiError) {
	if r.Header.Get("Authorization") == "" {
		return caller, false, senderError(http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token")
	}
	if problem != "" {
		return caller, false, senderError(http.StatusBadRequest, "IncompleteSignature", problem)
	}
	if a.service != "sts" {
		return caller, false, senderError(http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'. ")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if len(amzDate) < 8 || amzDate[:8] != a.date {
		return caller, false, senderError(http.StatusBadRequest, "IncompleteSignature", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+a.date+"' != '"+amzDate+"'")
	}
	k, known := s.keys[a.accessKeyID]
	if known && k.token != "" {
		if r.Header.Get("X-Amz-Security-Token") != k.token {
			return caller, false, senderError(http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
		}
		if !s.now().Before(k.expiration) {
			return caller, false, senderError(http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired")
		}
	}
	if aerr := s.checkSkew(amzDate); aerr != nil {
		return caller, false, aerr
	}
	if !known {
		return key{arn: "arn:aws:iam::" + s.Account + ":user/ststest", userID: "AIDA" + idSuffix(a.accessKeyID)}, false, nil
	}
	canonical := canonicalRequest(r, a, body)
	sts := stringToSign(amzDate, a, canonical)
	want := signature(k.secret, a, sts)
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		// As AWS does, the message shows the canonical request (including
		// signed header values such as X-Amz-Security-Token).
		return caller, false, senderError(http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"+
				"The Canonical String for this request should have been\n'"+canonical+"'\n\nThe String-to-Sign should have been\n'"+sts+"'\n")
	}
	if k.arn == "" {
		k.arn, k.userID = "arn:aws:iam::"+s.Account+":user/ststest", "AIDA"+idSuffix(a.accessKeyID)
	}
	return k, true, nil
}

var (
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDRE  = regexp.MustCompile(`^[\w+=,.@:/-]+$`) // 2 to 1224 characters
	roleARNRE     = regexp.MustCompile(`^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$`)
	accountRE     = regexp.MustCompile(`^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):`)
)

func accountOf(arn string) string {
	if m := accountRE.FindStringSubmatch(arn); m != nil {
		return m[1]
	}
	return ""
}

func validationError(msg string) *apiError {
	return senderError(http.StatusBadRequest, "ValidationError", msg)
}

// assumeRole answers AssumeRole (s.mu held).
func (s *Server) assumeRole(form url.Values, caller key) (any, *apiError) {
	roleARN, session, extID := form.Get("RoleArn"), form.Get("RoleSessionName"), form.Get("ExternalId")
	if roleARN == "" {
		return nil, validationError("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	}
	if session == "" {
		return nil, validationError("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	}
	if !sessionNameRE.MatchString(session) {
		return nil, validationError(fmt.Sprintf("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", session))
	}
	if _, ok := form["ExternalId"]; ok && (len(extID) < 2 || len(extID) > 1224 || !externalIDRE.MatchString(extID)) {
		return nil, validationError(fmt.Sprintf("1 validation error detected: Value '%s' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*", extID))
	}
	duration := DefaultDurationSeconds
	if v, ok := form["DurationSeconds"]; ok {
		d, err := strconv.Atoi(v[0])
		switch {
		case err != nil:
			return nil, validationError(fmt.Sprintf("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must be a number", v[0]))
		case d < MinDurationSeconds:
			return nil, validationError(fmt.Sprintf("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to %d", d, MinDurationSeconds))
		case d > MaxDurationSeconds:
			return nil, validationError(fmt.Sprintf("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to %d", d, MaxDurationSeconds))
		}
		duration = d
	}
	m := roleARNRE.FindStringSubmatch(roleARN)
	if m == nil {
		return nil, validationError(roleARN + " is invalid")
	}
	denied := s.denied ||
		(s.AllowedRoleARN != "" && roleARN != s.AllowedRoleARN) ||
		(s.RequiredExternalID != "" && extID != s.RequiredExternalID)
	if denied {
		return nil, senderError(http.StatusForbidden, "AccessDenied",
			fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.arn, roleARN))
	}
	partition, account, roleName := m[1], m[2], m[3]
	roleID := "AROA" + idSuffix(roleARN) + ":" + session
	assumedARN := "arn:" + partition + ":sts::" + account + ":assumed-role/" + roleName + "/" + session
	exp := s.now().Add(time.Duration(duration) * time.Second).UTC().Truncate(time.Second)
	akid, secret, token := newCredentials()
	s.keys[akid] = key{secret: secret, token: token, expiration: exp, arn: assumedARN, userID: roleID}
	return &assumeRoleResponse{Xmlns: Namespace, Result: assumeRoleResult{
		AssumedRoleUser: assumedRoleUser{AssumedRoleID: roleID, Arn: assumedARN},
		Credentials: xmlCredentials{
			AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token,
			Expiration: exp.Format(time.RFC3339),
		},
	}}, nil
}

// idSuffix derives the 17 characters after AROA/AIDA from name, stably.
func idSuffix(name string) string {
	sum := sha256.Sum256([]byte(name))
	return base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// tokenPrefix starts tokens like real STS ones; it is 16 base64 characters
// (12 bytes), so the random part that follows does not change it.
const tokenPrefix = "IQoJb3JpZ2luX2Vj"

func newCredentials() (akid, secret, token string) {
	b := make([]byte, 10+30+720)
	_, _ = rand.Read(b)
	akid = "ASIA" + base32.StdEncoding.EncodeToString(b[:10])
	secret = base64.StdEncoding.EncodeToString(b[10:40])
	token = tokenPrefix + base64.StdEncoding.EncodeToString(b[40:])
	return akid, secret, token
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// XML documents, shaped as STS writes them.

type assumeRoleResponse struct {
	XMLName   xml.Name         `xml:"AssumeRoleResponse"`
	Xmlns     string           `xml:"xmlns,attr"`
	Result    assumeRoleResult `xml:"AssumeRoleResult"`
	RequestID string           `xml:"ResponseMetadata>RequestId"`
}

type assumeRoleResult struct {
	AssumedRoleUser assumedRoleUser
	Credentials     xmlCredentials
}

type assumedRoleUser struct {
	AssumedRoleID string `xml:"AssumedRoleId"`
	Arn           string
}

type xmlCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

type getCallerIdentityResponse struct {
	XMLName   xml.Name       `xml:"GetCallerIdentityResponse"`
	Xmlns     string         `xml:"xmlns,attr"`
	Result    callerIdentity `xml:"GetCallerIdentityResult"`
	RequestID string         `xml:"ResponseMetadata>RequestId"`
}

type callerIdentity struct {
	Arn     string
	UserID  string `xml:"UserId"`
	Account string
}

type errorResponse struct {
	XMLName   xml.Name  `xml:"ErrorResponse"`
	Xmlns     string    `xml:"xmlns,attr"`
	Error     errorBody `xml:"Error"`
	RequestID string    `xml:"RequestId"`
}

type errorBody struct {
	Type    string
	Code    string
	Message string
}
