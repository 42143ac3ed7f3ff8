package imdstest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/daemon"
	"github.com/imdsdev/imds/internal/ec2"
)

// DefaultInstanceName is the name of the instance a server started without
// WithInstance serves.
const DefaultInstanceName = "default"

// DefaultRoleName is the role of an instance whose Role is empty.
const DefaultRoleName = "imds-instance-role"

// Instance describes one simulated EC2 instance. Only Name is required;
// every other value left empty is derived from the name, consistently
// across the metadata tree (instance-id, addresses, hostnames, ARNs...).
type Instance struct {
	// Name identifies the instance in the server's methods; letters,
	// digits, '-', '_' and '.', as imds instance names.
	Name string
	// InstanceID, Region, AvailabilityZone, InstanceType and AccountID
	// override the derived values ("i-0123456789abcdef0", "eu-west-1"...).
	InstanceID, Region, AvailabilityZone, InstanceType, AccountID string
	// Role is the IAM role whose fake, rotating credentials the instance
	// serves under iam/security-credentials/; empty means DefaultRoleName.
	Role string
	// NoRole serves no IAM role at all, as for an instance launched
	// without an instance profile (Role is then ignored).
	NoRole bool
	// Tags are served under tags/instance/ (instance metadata tags are
	// switched on when there are any), sorted by key.
	Tags map[string]string
	// UserData is served byte for byte at /latest/user-data; nil means
	// none (404, as EC2 answers).
	UserData []byte
	// IMDSv2Required refuses requests without a session token (401), as
	// an instance with HttpTokens=required does.
	IMDSv2Required bool
	// Spot makes the instance a spot instance from the start
	// (instance-life-cycle "spot"); a spot interruption does so anyway.
	Spot bool
	// SourceAddrs are the client addresses whose requests this instance
	// answers, such as "127.0.0.2". The first instance also answers every
	// address no instance claims, 127.0.0.1 included.
	SourceAddrs []string
}

// Option configures NewServer and Start.
type Option struct{ apply func(*settings) }

type settings struct {
	instances             []Instance
	lifetime, rotateAfter time.Duration
	log                   io.Writer
	logSet                bool
}

// WithInstance adds an instance. The first one added answers requests
// from any address no other instance claims; without WithInstance the
// server serves one instance named DefaultInstanceName.
func WithInstance(inst Instance) Option {
	return Option{func(s *settings) { s.instances = append(s.instances, inst) }}
}

// WithCredentialTimes sets how long served role credentials are valid
// (20m to 36h; default 6h) and after how long new ones replace them (at
// least 1m, and at most lifetime minus 15m; default 1h).
func WithCredentialTimes(lifetime, rotateAfter time.Duration) Option {
	return Option{func(s *settings) { s.lifetime, s.rotateAfter = lifetime, rotateAfter }}
}

// WithLog sends the server's log to w instead of t.Log; nil discards it.
func WithLog(w io.Writer) Option {
	return Option{func(s *settings) { s.log, s.logSet = w, true }}
}

// Server is a running metadata service. Its methods may be called from
// any goroutine.
type Server struct {
	d        *daemon.Daemon
	def      string // the default instance's name
	dir      string // holds the config file and the data directory
	instance map[string]bool
}

// NewServer starts a metadata server, as Start does, for the test t: its
// log goes to t.Log unless WithLog says otherwise, it is closed by
// t.Cleanup, and a bad option or a failed start fails the test with
// t.Fatal.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := start(opts, &testLog{t: t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Start starts a metadata server on 127.0.0.1 with a free port and a data
// directory of its own, outside a test (in an Example, a TestMain or a
// benchmark harness); Close stops it. Its log is discarded unless WithLog
// says otherwise.
func Start(opts ...Option) (*Server, error) { return start(opts, io.Discard) }

func start(opts []Option, logw io.Writer) (_ *Server, err error) {
	var set settings
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&set)
		}
	}
	if set.logSet {
		logw = set.log
		if logw == nil {
			logw = io.Discard
		}
	}
	doc, names, err := configFile(&set)
	if err != nil {
		return nil, fmt.Errorf("imdstest: %w", err)
	}
	// One directory for the config, the data and the admin socket, whose
	// path must fit in 108 bytes: hence not under a long t.TempDir name.
	dir, err := os.MkdirTemp("", "imdstest")
	if err != nil {
		return nil, fmt.Errorf("imdstest: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	cfgPath := filepath.Join(dir, "imds.yaml")
	if err := os.WriteFile(cfgPath, doc, 0o600); err != nil {
		return nil, fmt.Errorf("imdstest: %w", err)
	}
	d, err := daemon.Open(daemon.Config{
		ConfigPath:  cfgPath,
		Listen:      []string{"127.0.0.1:0"},
		DataDir:     filepath.Join(dir, "data"),
		AdminSocket: filepath.Join(dir, "admin.sock"),
		Stderr:      logw,
	})
	if err != nil {
		return nil, fmt.Errorf("imdstest: starting the server: %w", err)
	}
	s := &Server{d: d, def: names[0], dir: dir, instance: map[string]bool{}}
	for _, n := range names {
		s.instance[n] = true
	}
	return s, nil
}

// Close stops the server, waiting up to 10 seconds for requests in
// flight, and removes its directory. Closing twice is harmless.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.d.Close(ctx)
	os.RemoveAll(s.dir)
	if err != nil {
		return fmt.Errorf("imdstest: closing the server: %w", err)
	}
	return nil
}

// configFile writes the settings as an imds config file, so that they go
// through the same checks as a user's file. It returns the instance names,
// the default first.
func configFile(set *settings) ([]byte, []string, error) {
	type credentials struct {
		Lifetime    string `yaml:"lifetime,omitempty"`
		RotateAfter string `yaml:"rotate_after,omitempty"`
	}
	type instance struct {
		Name             string     `yaml:"name"`
		InstanceID       string     `yaml:"instance_id,omitempty"`
		AccountID        string     `yaml:"account_id,omitempty"`
		Region           string     `yaml:"region,omitempty"`
		AvailabilityZone string     `yaml:"availability_zone,omitempty"`
		InstanceType     string     `yaml:"instance_type,omitempty"`
		LifeCycle        string     `yaml:"instance_life_cycle,omitempty"`
		Role             *yaml.Node `yaml:"role,omitempty"`
		Tags             *yaml.Node `yaml:"tags,omitempty"`
		TagsInMetadata   bool       `yaml:"tags_in_metadata,omitempty"`
		UserData         string     `yaml:"user_data_base64,omitempty"`
		IMDSv2           string     `yaml:"imdsv2,omitempty"`
		SourceAddrs      []string   `yaml:"source_addresses,omitempty"`
	}
	var file struct {
		Credentials     *credentials `yaml:"credentials,omitempty"`
		Instances       []instance   `yaml:"instances,omitempty"`
		DefaultInstance string       `yaml:"default_instance,omitempty"`
	}
	if set.lifetime != 0 || set.rotateAfter != 0 {
		c := &credentials{}
		if set.lifetime != 0 {
			c.Lifetime = set.lifetime.String()
		}
		if set.rotateAfter != 0 {
			c.RotateAfter = set.rotateAfter.String()
		}
		file.Credentials = c
	}
	names := []string{}
	for i, in := range set.instances {
		if in.Name == "" {
			return nil, nil, fmt.Errorf("WithInstance #%d: Instance.Name is required", i+1)
		}
		if slices.Contains(names, in.Name) {
			return nil, nil, fmt.Errorf("WithInstance #%d: a second instance named %q", i+1, in.Name)
		}
		names = append(names, in.Name)
		doc := instance{Name: in.Name, InstanceID: in.InstanceID, AccountID: in.AccountID, Region: in.Region,
			AvailabilityZone: in.AvailabilityZone, InstanceType: in.InstanceType, SourceAddrs: in.SourceAddrs}
		switch {
		case in.NoRole:
			doc.Role = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
		case in.Role != "":
			doc.Role = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: in.Role}
		}
		if len(in.Tags) > 0 {
			m := &yaml.Node{Kind: yaml.MappingNode}
			keys := make([]string, 0, len(in.Tags))
			for k := range in.Tags {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k},
					&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: in.Tags[k]})
			}
			doc.Tags, doc.TagsInMetadata = m, true
		}
		if in.UserData != nil {
			doc.UserData = base64.StdEncoding.EncodeToString(in.UserData)
		}
		if in.IMDSv2Required {
			doc.IMDSv2 = ec2.TokensRequired
		}
		if in.Spot {
			doc.LifeCycle = "spot"
		}
		file.Instances = append(file.Instances, doc)
	}
	if len(names) == 0 {
		names = []string{DefaultInstanceName}
	} else {
		file.DefaultInstance = names[0]
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	if err := enc.Encode(&file); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), names, enc.Close()
}

// URL is the server's base URL, such as "http://127.0.0.1:41377", to give
// a metadata client as its endpoint.
func (s *Server) URL() string { return s.d.URL() }

// Setenv points every AWS SDK in the process at the server for the rest
// of the test, with t.Setenv: AWS_EC2_METADATA_SERVICE_ENDPOINT is set to
// URL, and the other credential sources the SDKs try first (environment
// keys, shared config and credentials files, profiles, container and web
// identity credentials) are switched off, so that credentials can only
// come from the server. Like t.Setenv it cannot be used in parallel tests.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	missing := filepath.Join(s.dir, "no-such-file")
	for _, kv := range [][2]string{
		{"AWS_EC2_METADATA_SERVICE_ENDPOINT", s.URL()},
		{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4"},
		{"AWS_EC2_METADATA_DISABLED", "false"},
		{"AWS_EC2_METADATA_V1_DISABLED", ""},
		{"AWS_CONFIG_FILE", missing},
		{"AWS_SHARED_CREDENTIALS_FILE", missing},
		// The SDKs read an empty variable as unset.
		{"AWS_PROFILE", ""},
		{"AWS_DEFAULT_PROFILE", ""},
		{"AWS_ACCESS_KEY_ID", ""},
		{"AWS_ACCESS_KEY", ""},
		{"AWS_SECRET_ACCESS_KEY", ""},
		{"AWS_SECRET_KEY", ""},
		{"AWS_SESSION_TOKEN", ""},
		{"AWS_CONTAINER_CREDENTIALS_FULL_URI", ""},
		{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""},
		{"AWS_CONTAINER_AUTHORIZATION_TOKEN", ""},
		{"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", ""},
		{"AWS_WEB_IDENTITY_TOKEN_FILE", ""},
		{"AWS_ROLE_ARN", ""},
	} {
		t.Setenv(kv[0], kv[1])
	}
}

// DefaultInstance is the name of the instance that answers 127.0.0.1.
func (s *Server) DefaultInstance() string { return s.def }

// name resolves "" to the default instance and refuses unknown names early,
// with a message that lists the known ones.
func (s *Server) name(instance string) (string, error) {
	if instance == "" {
		return s.def, nil
	}
	if !s.instance[instance] {
		known := make([]string, 0, len(s.instance))
		for n := range s.instance {
			known = append(known, n)
		}
		slices.Sort(known)
		return "", fmt.Errorf("imdstest: no instance named %q (the server has %s)", instance, strings.Join(known, ", "))
	}
	return instance, nil
}

func (s *Server) event(instance string, req ec2.EventRequest) error {
	name, err := s.name(instance)
	if err != nil {
		return err
	}
	if _, err := s.d.Admin.Events.TriggerEvent(context.Background(), name, req); err != nil {
		return fmt.Errorf("imdstest: %s event on %s: %s", req.Type, name, ec2.ErrorMessage(err))
	}
	return nil
}

// SpotInterruption issues a spot interruption notice now: at once
// spot/instance-action names action ("terminate", "stop" or "hibernate";
// "" means terminate) and a time in from now (0 means two minutes, the
// notice EC2 gives), spot/termination-time shows that time, and the
// instance becomes a spot instance. A second notice replaces the first.
// instance "" is the default instance.
func (s *Server) SpotInterruption(instance, action string, in time.Duration) error {
	if in < 0 {
		return fmt.Errorf("imdstest: SpotInterruption: in must not be negative, got %s", in)
	}
	return s.event(instance, ec2.EventRequest{Type: ec2.EventSpot, Action: action, Lead: in})
}

// RebalanceRecommendation issues a rebalance recommendation now
// (events/recommendations/rebalance).
func (s *Server) RebalanceRecommendation(instance string) error {
	return s.event(instance, ec2.EventRequest{Type: ec2.EventRebalance})
}

// ScheduleMaintenance schedules a maintenance event with an EC2 event code
// ("instance-reboot", "system-reboot", "system-maintenance",
// "instance-retirement" or "instance-stop"; "" means system-reboot),
// starting in from now (0 means one hour), shown under
// events/maintenance/scheduled. It returns the event's ID.
func (s *Server) ScheduleMaintenance(instance, code string, in time.Duration) (string, error) {
	name, err := s.name(instance)
	if err != nil {
		return "", err
	}
	if in < 0 {
		return "", fmt.Errorf("imdstest: ScheduleMaintenance: in must not be negative, got %s", in)
	}
	req := ec2.EventRequest{Type: ec2.EventMaintenance, Code: code}
	if in > 0 {
		req.NotBefore = time.Now().Add(in)
	}
	ev, err := s.d.Admin.Events.TriggerEvent(context.Background(), name, req)
	if err != nil {
		return "", fmt.Errorf("imdstest: maintenance event on %s: %s", name, ec2.ErrorMessage(err))
	}
	return ev.Maintenance[len(ev.Maintenance)-1].ID, nil
}

// AutoscalingState sets autoscaling/target-lifecycle-state, e.g.
// "Terminated" to tell the instance its Auto Scaling group is removing it.
func (s *Server) AutoscalingState(instance, state string) error {
	return s.event(instance, ec2.EventRequest{Type: ec2.EventAutoscaling, State: state})
}

// ClearEvents ends every event of the instance: spot notice, rebalance
// recommendation, maintenance events and their history, and the Auto
// Scaling state. Faults stay.
func (s *Server) ClearEvents(instance string) error {
	return s.event(instance, ec2.EventRequest{Type: ec2.EventClear})
}

// Faults make the server misbehave for an instance; the zero value is no
// fault.
type Faults struct {
	// Latency delays every response; with LatencyMax above it, by a random
	// time between the two. At most a minute.
	Latency, LatencyMax time.Duration
	// ErrorRate is the share of requests (0 to 1) answered with ErrorStatus,
	// 500 or 503 (0 means 503).
	ErrorRate   float64
	ErrorStatus int
	// RateLimit answers 429 above this many requests a second, Burst at
	// once; 0 means no limit.
	RateLimit float64
	Burst     int
	// TokenRefused answers PUT /latest/api/token with 403, as an instance
	// with IMDSv2 switched off does; TokenTimeout never answers it.
	TokenRefused, TokenTimeout bool
	// ExpiredCredentials serves role credentials whose Expiration has passed.
	ExpiredCredentials bool
	// DropRate is the share of requests (0 to 1) whose connection is closed
	// without an answer.
	DropRate float64
}

// SetFaults replaces the faults of the instance; instance "" sets them for
// every instance (an instance's own faults add to those). SetFaults with
// the zero Faults removes them.
func (s *Server) SetFaults(instance string, f Faults) error {
	if instance != "" {
		if _, err := s.name(instance); err != nil {
			return err
		}
	}
	ef := ec2.Faults{Latency: f.Latency, LatencyMax: f.LatencyMax, ErrorRate: f.ErrorRate, ErrorStatus: f.ErrorStatus,
		RateLimit: f.RateLimit, Burst: f.Burst, ExpiredCredentials: f.ExpiredCredentials, DropRate: f.DropRate}
	switch {
	case f.TokenRefused && f.TokenTimeout:
		return fmt.Errorf("imdstest: SetFaults: TokenRefused and TokenTimeout cannot both be set")
	case f.TokenRefused:
		ef.Token = ec2.TokenRefuse
	case f.TokenTimeout:
		ef.Token = ec2.TokenTimeout
	}
	if err := s.d.Admin.Faults.SetFaults(context.Background(), instance, ef); err != nil {
		return fmt.Errorf("imdstest: SetFaults: %s", ec2.ErrorMessage(err))
	}
	return nil
}

// RotateCredentials replaces the credentials of role now, as happens
// before they expire; role "" rotates every role.
func (s *Server) RotateCredentials(role string) error {
	if err := s.d.Admin.Credentials.RotateCredentials(context.Background(), role); err != nil {
		return fmt.Errorf("imdstest: RotateCredentials: %s", ec2.ErrorMessage(err))
	}
	return nil
}

// Request is one request the server answered, as its request record
// keeps it: no tokens, credentials or bodies.
type Request struct {
	Time     time.Time
	Instance string // "" when the requester matched no instance
	Method   string
	Path     string
	Status   int // 0 when the connection was closed without an answer
	// IMDSv2 tells whether the request carried a session token (or asked
	// for one).
	IMDSv2    bool
	UserAgent string
	// Fault names the fault injected into this request, if any.
	Fault string
}

// Requests returns the requests of the instance ("" for every instance),
// oldest first. A request is recorded before its answer is sent, so a
// client that has its answer finds its request here.
func (s *Server) Requests(instance string) []Request {
	recs, _ := s.d.Admin.Requests.Requests(context.Background(), instance, 0)
	out := make([]Request, 0, len(recs))
	for _, r := range recs {
		out = append(out, Request{Time: r.Time, Instance: r.Instance, Method: r.Method, Path: r.Path,
			Status: r.Status, IMDSv2: r.API == "v2", UserAgent: r.UserAgent, Fault: r.Fault})
	}
	return out
}

// testLog writes the server's log lines with t.Log. Close flushes the log
// before the test's cleanup returns, so no line arrives after the test.
type testLog struct {
	t       testing.TB
	mu      sync.Mutex
	partial []byte
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.t.Log("imds: " + string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}
