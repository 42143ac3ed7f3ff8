// Package ststest is a stand-in for AWS STS, for tests only.
//
// A Server listens on loopback and speaks the STS query protocol exactly as
// the AWS SDKs use it: POST / with a form-encoded body
// (Action=AssumeRole&Version=2011-06-15&RoleArn=...), a SigV4 Authorization
// header scoped to the sts service, and XML answers and errors shaped like
// those of the real service. Point a real SDK at it with its standard
// endpoint settings (sts.Options.BaseEndpoint, AWS_ENDPOINT_URL_STS, ...);
// nothing here ever contacts AWS.
//
// AssumeRole hands out fresh random credentials (ASIA… key IDs, 40-character
// secrets, long session tokens) that expire DurationSeconds after Server.Now.
// GetCallerIdentity answers for whichever key signed the request. Tests can
// deny access, require a role ARN or external ID, and simulate an outage; the
// Server records what it was asked.
//
// Signatures are verified cryptographically for keys the Server knows: those
// registered with AddKey and those it issued itself (whose session token must
// then match too). Requests signed with other keys are accepted as long as
// the Authorization header is well formed and scoped to sts.
package ststest
