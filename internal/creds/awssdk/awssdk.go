// Package awssdk is the "aws" credential source: the host's own AWS
// credentials, found the way the AWS SDK for Go finds them (environment,
// shared config and credentials files, SSO, credential_process, container
// endpoints, web identity, profiles that assume roles), optionally used to
// sts:AssumeRole into a role whose credentials are then served.
//
// The SDK's chain would end by asking EC2 instance metadata for credentials,
// which here means asking imds itself. That step is disabled whatever the
// environment or profile say (config.WithEC2IMDSClientEnableState), and New
// refuses a configuration whose credentials could only come from instance
// metadata (no other source found, or credential_source =
// Ec2InstanceMetadata).
//
// STS is reached through the SDK's standard endpoint settings:
// AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, endpoint_url in the profile, or an
// sts entry of the profile's services section. (The SDK itself applies only
// the service-specific ones to the roles that profiles assume; Source makes
// those follow the same settings as its own STS client.)
//
// When nothing but instance metadata could supply the base credentials, New
// fails rather than serve a role that can never work. A base source that
// fails later (expired SSO session, failing credential_process) makes
// Retrieve return a plain error, which the refresher reports as EC2's
// InternalError; only AccessDenied from STS becomes EC2's
// AssumeRoleUnauthorizedAccess.
//
// Retrieve returns fresh credentials on every call: no cache sits in front of
// AssumeRole, and the SDK's cache of base credentials is invalidated when
// they are what is served. Errors name the profile and role but never carry
// a secret: SDK messages are scrubbed of every secret Source has seen and of
// anything shaped like a secret key or session token, and credential_process
// output is never echoed.
package awssdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/imdsdev/imds/internal/ec2"
)

// Defaults and limits of Config.
const (
	DefaultRegion   = "us-east-1"
	DefaultDuration = time.Hour
	MinDuration     = 15 * time.Minute
	MaxDuration     = 12 * time.Hour
)

// Config selects the host's AWS credentials and an optional role to assume.
type Config struct {
	Profile     string        // shared config profile ("" = default chain: env, shared files, SSO, credential_process, ...)
	Region      string        // region for STS ("" = from the profile/env, else us-east-1)
	RoleARN     string        // if set, sts:AssumeRole into it with the base credentials
	ExternalID  string        // ExternalId of AssumeRole; only with RoleARN
	SessionName string        // default "imds-<hostname>" sanitised to STS's [\w+=,.@-]{2,64}; only with RoleARN
	Duration    time.Duration // AssumeRole DurationSeconds; 0 = 1h; only with RoleARN
	// SourceProfile, if set, is the profile the base credentials come from
	// instead of Profile (which still supplies region and endpoints).
	SourceProfile string
}

var (
	roleARNRE     = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDRE  = regexp.MustCompile(`^[\w+=,.@:/-]+$`) // and 2 to 1224 characters
	regionRE      = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	sessionBadRE  = regexp.MustCompile(`[^\w+=,.@-]`)
)

// validate checks c and fills in the defaults.
func (c *Config) validate() error {
	if c.Region != "" && (len(c.Region) > 63 || !regionRE.MatchString(c.Region)) {
		return fmt.Errorf("aws: Region %q is not a region name such as us-east-1", c.Region)
	}
	if c.RoleARN == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"ExternalID", c.ExternalID != ""}, {"SessionName", c.SessionName != ""}, {"Duration", c.Duration != 0}} {
			if f.set {
				return fmt.Errorf("aws: %s is set but RoleARN is not: it only applies to a role to assume", f.name)
			}
		}
		return nil
	}
	if !roleARNRE.MatchString(c.RoleARN) {
		return fmt.Errorf("aws: RoleARN %q is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)", c.RoleARN)
	}
	if c.ExternalID != "" && (len(c.ExternalID) < 2 || len(c.ExternalID) > 1224 || !externalIDRE.MatchString(c.ExternalID)) {
		// The value is not echoed: some treat external IDs as confidential.
		return fmt.Errorf("aws: ExternalID must be 2 to 1224 characters from [A-Za-z0-9_+=,.@:/-] (got %d characters)", len(c.ExternalID))
	}
	if c.SessionName == "" {
		c.SessionName = DefaultSessionName()
	} else if !sessionNameRE.MatchString(c.SessionName) {
		return fmt.Errorf("aws: SessionName %q must be 2 to 64 characters from [A-Za-z0-9_+=,.@-]", c.SessionName)
	}
	switch {
	case c.Duration == 0:
		c.Duration = DefaultDuration
	case c.Duration < MinDuration || c.Duration > MaxDuration:
		return fmt.Errorf("aws: Duration %v is outside STS's range of %v to %v", c.Duration, MinDuration, MaxDuration)
	case c.Duration%time.Second != 0:
		return fmt.Errorf("aws: Duration %v is not a whole number of seconds", c.Duration)
	}
	return nil
}

// DefaultSessionName is "imds-<hostname>", made to fit STS's
// [\w+=,.@-]{2,64}.
func DefaultSessionName() string {
	host, _ := os.Hostname()
	return SanitizeSessionName("imds-" + host)
}

// SanitizeSessionName replaces the characters STS does not allow in a role
// session name with '-' and cuts the result to 64 characters.
func SanitizeSessionName(s string) string {
	s = sessionBadRE.ReplaceAllString(s, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	for len(s) < 2 {
		s += "-"
	}
	return s
}

// Source implements ec2.CredentialSource.
type Source struct {
	// Now stamps LastUpdated; tests replace it.
	Now func() time.Time

	cfg    Config // validated, defaults filled in
	region string
	base   *recorder                    // base credentials
	role   *stscreds.AssumeRoleProvider // nil without RoleARN
}

var _ ec2.CredentialSource = (*Source)(nil)

// New loads the AWS configuration and checks that credentials can be had
// without instance metadata. It does not fetch credentials: Retrieve does.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Source{Now: time.Now, cfg: cfg}
	awsCfg, err := load(ctx, cfg.Profile, cfg.Region)
	if err != nil {
		return nil, loadError("Profile", cfg.Profile, err)
	}
	s.region = awsCfg.Region
	credCfg := awsCfg
	if cfg.SourceProfile != "" {
		if credCfg, err = load(ctx, cfg.SourceProfile, awsCfg.Region); err != nil {
			return nil, loadError("SourceProfile", cfg.SourceProfile, err)
		}
	}
	if credCfg.Credentials == nil || usesIMDS(credCfg.Credentials) {
		return nil, fmt.Errorf("aws: no AWS credentials for %s: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "+
			"or use a profile with keys, SSO, credential_process, web identity or a source_profile; "+
			"EC2 instance metadata is never used (imds would be asking itself)", s.baseDesc())
	}
	s.base = &recorder{p: credCfg.Credentials}
	if cfg.RoleARN != "" {
		stsCfg := awsCfg.Copy()
		stsCfg.Credentials = s.base
		s.role = stscreds.NewAssumeRoleProvider(sts.NewFromConfig(stsCfg), cfg.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = cfg.SessionName
			o.Duration = cfg.Duration
			if cfg.ExternalID != "" {
				o.ExternalID = aws.String(cfg.ExternalID)
			}
		})
	}
	return s, nil
}

// load runs the SDK's configuration loading for profile with instance
// metadata disabled, and makes the STS clients of roles that profiles assume
// use the endpoint an STS client of the loaded configuration uses.
func load(ctx context.Context, profile, region string) (aws.Config, error) {
	ep := &stsEndpoint{}
	opts := []func(*config.LoadOptions) error{
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
		config.WithAssumeRoleCredentialOptions(func(o *stscreds.AssumeRoleOptions) {
			if o.Client != nil {
				o.Client = &assumeRoleClient{c: o.Client, ep: ep}
			}
		}),
		config.WithWebIdentityRoleCredentialOptions(func(o *stscreds.WebIdentityRoleOptions) {
			if o.Client != nil {
				o.Client = &webIdentityClient{c: o.Client, ep: ep}
			}
		}),
	}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	} else {
		opts = append(opts, config.WithDefaultRegion(DefaultRegion))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, err
	}
	ep.url.Store(sts.NewFromConfig(cfg).Options().BaseEndpoint)
	return cfg, nil
}

func loadError(field, profile string, err error) error {
	var nf config.SharedConfigProfileNotExistError
	if errors.As(err, &nf) {
		return fmt.Errorf("aws: %s %q: no such profile in the AWS config files", field, nf.Profile)
	}
	what := "the default profile"
	if profile != "" {
		what = fmt.Sprintf("%s %q", field, profile)
	}
	return fmt.Errorf("aws: loading the AWS configuration of %s: %s", what, scrubShapes(err.Error()))
}

// usesIMDS tells whether the SDK's chain ends at EC2 instance metadata
// (directly, or as credential_source of a profile's role).
func usesIMDS(p aws.CredentialsProvider) bool {
	ps, ok := p.(aws.CredentialProviderSource)
	return ok && slices.Contains(ps.ProviderSources(), aws.CredentialSourceIMDS)
}

// stsEndpoint is the base endpoint for STS resolved from a loaded config.
type stsEndpoint struct{ url atomic.Pointer[string] }

func (e *stsEndpoint) opts(optFns []func(*sts.Options)) []func(*sts.Options) {
	u := e.url.Load()
	if u == nil {
		return optFns
	}
	return append([]func(*sts.Options){func(o *sts.Options) {
		if o.BaseEndpoint == nil { // a service-specific setting already won
			o.BaseEndpoint = aws.String(*u)
		}
	}}, optFns...)
}

type assumeRoleClient struct {
	c  stscreds.AssumeRoleAPIClient
	ep *stsEndpoint
}

func (a *assumeRoleClient) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	return a.c.AssumeRole(ctx, in, a.ep.opts(optFns)...)
}

type webIdentityClient struct {
	c  stscreds.AssumeRoleWithWebIdentityAPIClient
	ep *stsEndpoint
}

func (w *webIdentityClient) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	return w.c.AssumeRoleWithWebIdentity(ctx, in, w.ep.opts(optFns)...)
}

// Retrieve returns fresh credentials: the role's from a new AssumeRole call
// with RoleARN, else the base credentials themselves (with a zero Expiration
// when they cannot expire). AccessDenied from STS becomes an *ec2.RoleError
// with EC2's AssumeRoleUnauthorizedAccess; other failures are plain errors.
func (s *Source) Retrieve(ctx context.Context) (ec2.Credentials, error) {
	if s.role == nil {
		s.base.invalidate()
	}
	c, err := s.base.Retrieve(ctx)
	if err != nil {
		return ec2.Credentials{}, s.failure("getting credentials of "+s.baseDesc(), "of "+s.baseDesc(), err)
	}
	if s.role != nil {
		if c, err = s.role.Retrieve(ctx); err != nil {
			return ec2.Credentials{}, s.failure("assuming role "+s.cfg.RoleARN+" with the credentials of "+s.baseDesc(), s.cfg.RoleARN, err)
		}
		s.base.remember(c)
	}
	if !c.HasKeys() {
		return ec2.Credentials{}, fmt.Errorf("aws: %s returned credentials without an access key ID or secret", s)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	out := ec2.Credentials{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		LastUpdated:     now(),
	}
	if c.CanExpire {
		out.Expiration = c.Expires
	}
	return out, nil
}

// failure turns an SDK error into one that names what failed and holds no
// secret. role names the role being assumed, should STS deny it.
func (s *Source) failure(doing, role string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
		return &ec2.RoleError{EC2Code: "AssumeRoleUnauthorizedAccess",
			Message: "imds cannot assume the role " + role + ": " + s.base.scrub(ae.ErrorMessage())}
	}
	e := &Error{msg: "aws: " + doing + ": " + s.base.scrub(sdkMessage(err))}
	switch {
	case errors.Is(err, context.Canceled):
		e.cause = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		e.cause = context.DeadlineExceeded
	}
	return e
}

// Error is a failure to get credentials. Its message holds no secret; it
// wraps nothing of the SDK's, only context.Canceled or DeadlineExceeded
// when the failure came from the context.
type Error struct {
	msg   string
	cause error
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the context error behind the failure, if any.
func (e *Error) Unwrap() error { return e.cause }

// sdkMessage is the text of an SDK error, except where the SDK would echo
// credential_process output (which holds the secret).
func sdkMessage(err error) string {
	var pe *processcreds.ProviderError
	if errors.As(err, &pe) && pe.Err != nil && strings.HasPrefix(pe.Err.Error(), "parse failed of process output") {
		msg := "credential_process printed output that is not valid credentials JSON (not shown: it may hold secrets)"
		if inner := errors.Unwrap(pe.Err); inner != nil {
			msg += ": " + inner.Error()
		}
		return msg
	}
	return err.Error()
}

func (s *Source) baseDesc() string {
	switch {
	case s.cfg.SourceProfile != "":
		return fmt.Sprintf("source profile %q", s.cfg.SourceProfile)
	case s.cfg.Profile != "":
		return fmt.Sprintf("profile %q", s.cfg.Profile)
	default:
		return "the default credential chain"
	}
}

// String describes the profiles and role, without secrets.
func (s *Source) String() string {
	var b strings.Builder
	b.WriteString("aws(")
	if s.cfg.Profile != "" {
		fmt.Fprintf(&b, "profile %q", s.cfg.Profile)
	} else {
		b.WriteString("default chain")
	}
	if s.cfg.SourceProfile != "" {
		fmt.Fprintf(&b, ", source profile %q", s.cfg.SourceProfile)
	}
	if s.cfg.RoleARN != "" {
		fmt.Fprintf(&b, ", role %s, session %s, duration %v", s.cfg.RoleARN, s.cfg.SessionName, s.cfg.Duration)
		if s.cfg.ExternalID != "" {
			b.WriteString(", with external ID")
		}
	}
	b.WriteString(", region " + s.region + ")")
	return b.String()
}

// recorder wraps the base credentials provider and remembers the secrets it
// and the role handed out, so that they can be cut out of error messages.
type recorder struct {
	p aws.CredentialsProvider

	mu      sync.Mutex
	secrets []string // newest last
}

const maxSecrets = 16

func (r *recorder) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := r.p.Retrieve(ctx)
	if err == nil {
		r.remember(c)
	}
	return c, err
}

// ProviderSources passes on the SDK's record of where credentials come from.
func (r *recorder) ProviderSources() []aws.CredentialSource {
	if ps, ok := r.p.(aws.CredentialProviderSource); ok {
		return ps.ProviderSources()
	}
	return nil
}

// invalidate drops the SDK's cached base credentials so that the next
// Retrieve fetches anew.
func (r *recorder) invalidate() {
	if c, ok := r.p.(*aws.CredentialsCache); ok {
		c.Invalidate()
	}
}

func (r *recorder) remember(c aws.Credentials) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range []string{c.SecretAccessKey, c.SessionToken} {
		if len(v) < 8 || slices.Contains(r.secrets, v) {
			continue
		}
		r.secrets = append(r.secrets, v)
		if len(r.secrets) > maxSecrets {
			r.secrets = slices.Delete(r.secrets, 0, len(r.secrets)-maxSecrets)
		}
	}
}

// scrub removes every remembered secret from msg, then anything shaped like
// a secret, and puts it on one line.
func (r *recorder) scrub(msg string) string {
	r.mu.Lock()
	for _, v := range r.secrets {
		msg = strings.ReplaceAll(msg, v, redacted)
	}
	r.mu.Unlock()
	return strings.Join(strings.Fields(scrubShapes(msg)), " ")
}

const redacted = "[REDACTED]"

var secretRunRE = regexp.MustCompile(`[A-Za-z0-9/+]{40,}={0,2}`)

// scrubShapes redacts runs of base64 characters that look like secret access
// keys (40 or more characters mixing upper case, lower case and digits) or
// session tokens (100 or more).
func scrubShapes(msg string) string {
	return secretRunRE.ReplaceAllStringFunc(msg, func(run string) string {
		if len(run) >= 100 {
			return redacted
		}
		var upper, lower, digit bool
		for _, c := range run {
			switch {
			case c >= 'A' && c <= 'Z':
				upper = true
			case c >= 'a' && c <= 'z':
				lower = true
			case c >= '0' && c <= '9':
				digit = true
			}
		}
		if upper && lower && digit {
			return redacted
		}
		return run
	})
}
