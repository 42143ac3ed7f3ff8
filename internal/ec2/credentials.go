package ec2

import (
	"context"
	"time"
)

// Credentials are temporary AWS credentials as IMDS serves them for a role.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// LastUpdated is when these credentials were put in place.
	LastUpdated time.Time
	// Expiration is when they stop being valid.
	Expiration time.Time
}

// String hides the secret parts so that credentials never reach a log by accident.
func (c Credentials) String() string {
	id := c.AccessKeyID
	if len(id) > 8 {
		id = id[:8] + "…"
	}
	return "Credentials{AccessKeyID:" + id + " Expiration:" + c.Expiration.UTC().Format(time.RFC3339) + "}"
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// CredentialProvider hands out the current credentials of a role. It must
// answer from memory: a request for metadata never waits on an upstream call.
type CredentialProvider interface {
	// Credentials returns the credentials currently served for the role of
	// inst. Returns ENOTFOUND if inst has no such role, and EUNAVAILABLE
	// (with a message EC2 would show) when no valid credentials exist.
	Credentials(ctx context.Context, inst *Instance, role string) (Credentials, error)
}

// IdentityCredentialProvider hands out the instance identity credentials of
// identity-credentials/ec2/security-credentials/ec2-instance, which every
// instance has whatever its role.
type IdentityCredentialProvider interface {
	IdentityCredentials(ctx context.Context, inst *Instance) (Credentials, error)
}

// RoleError is a credential failure that EC2 reports inside the credentials
// document (200 with a Code other than Success) rather than as an HTTP error.
type RoleError struct {
	// EC2Code is the Code EC2 would show, e.g. AssumeRoleUnauthorizedAccess.
	EC2Code string
	// Message explains the failure; it never contains secrets.
	Message string
}

func (e *RoleError) Error() string { return e.EC2Code + ": " + e.Message }

// CredentialSource fetches credentials from wherever a role's come from
// (generated, static keys, the AWS SDK, a credential_process command). It may
// block on the network or a subprocess, so only the background refresher
// calls it, never a metadata request.
type CredentialSource interface {
	// Retrieve returns fresh credentials. A zero Expiration means the
	// credentials do not expire (static keys); the refresher then serves them
	// with a rolling Expiration. Errors must not contain secrets; a
	// *RoleError sets the Code that EC2 would show.
	Retrieve(ctx context.Context) (Credentials, error)
}

// CredentialRotator replaces role credentials on demand.
type CredentialRotator interface {
	// RotateCredentials replaces the credentials of role now, or of every
	// role when role is empty. Returns ENOTFOUND if no instance has the role.
	RotateCredentials(ctx context.Context, role string) error
}

// RoleStatus is the state of one role's credentials as operators see it
// (metrics, the dashboard): never the secrets.
type RoleStatus struct {
	Role string
	// Kind is the kind of source: fake, static, aws or process.
	Kind string
	// Source describes where the credentials come from ("static keys
	// AKIA…XYZ1", ...), without secrets.
	Source string
	// Valid says credentials can be served now.
	Valid bool
	// LastUpdated and Expiration are those of the set served now. Fake
	// roles hold one set per instance: then those of the newest, and Sets
	// says how many.
	LastUpdated, Expiration time.Time
	Sets                    int
	// Refreshes and Failures count the source's successful and failed
	// fetches (fake roles: sets generated, never a failure).
	Refreshes, Failures int64
	// LastError is why the last fetch failed, if it did.
	LastError string
}
