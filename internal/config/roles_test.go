package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
)

func TestRoles(t *testing.T) {
	src := `roles:
  web-role:
    source: aws
    profile: dev
    region: eu-west-1
    role_arn: arn:aws:iam::123456789012:role/web
    external_id: ext-1
    session_name: imds-web
    duration: 2h
    instance_profile_name: web-profile
  ci:
    source: static
    access_key_id: AKIAIOSFODNN7EXAMPLE
    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  tool:
    source: process
    command: ["/usr/bin/get-creds", "--role", "tool"]
    timeout: 10s
  line:
    source: process
    command: /usr/bin/get-creds --role 'a b'
  fake-one:
instance:
  role: web-role
`
	f, err := Parse("t.yaml", []byte(src), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := []Role{
		{Name: "web-role", Line: 2, Source: SourceAWS, Profile: "dev", Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/web",
			ExternalID: "ext-1", SessionName: "imds-web", Duration: 2 * time.Hour, InstanceProfileName: "web-profile"},
		{Name: "ci", Line: 11, Source: SourceStatic, AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{Name: "tool", Line: 15, Source: SourceProcess, Command: []string{"/usr/bin/get-creds", "--role", "tool"}, Timeout: 10 * time.Second},
		{Name: "line", Line: 19, Source: SourceProcess, CommandLine: "/usr/bin/get-creds --role 'a b'"},
		{Name: "fake-one", Line: 22, Source: SourceFake},
	}
	if diff := cmp.Diff(f.Roles, want); diff != "" {
		t.Errorf("Roles (-got +want):\n%s", diff)
	}
	inst, err := f.BuildInstance(ec2.DeriveOptions{Seed: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Role.InstanceProfileName != "web-profile" || !strings.HasSuffix(inst.InstanceProfileArn(), ":instance-profile/web-profile") {
		t.Errorf("instance profile %+v not taken from roles:", inst.Role)
	}
}

func TestRoleErrors(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"unknown source", "roles:\n  r:\n    source: vault\n", `t.yaml:3: roles.r.source: must be fake, static, aws or process, got "vault"`},
		{"key of another source", "roles:\n  r:\n    source: static\n    role_arn: arn:aws:iam::123456789012:role/x\n",
			"t.yaml:4: roles.r.role_arn: only applies to source aws, but this role's source is static"},
		{"half a key pair", "roles:\n  r:\n    source: static\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n",
			"t.yaml:2: roles.r.secret_access_key: access_key_id and secret_access_key go together (leave both out to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"},
		{"bad role arn", "roles:\n  r:\n    source: aws\n    role_arn: arn:aws:iam::123:role/x\n",
			`t.yaml:4: roles.r.role_arn: must look like arn:aws:iam::123456789012:role/name, got "arn:aws:iam::123:role/x"`},
		{"external id without role", "roles:\n  r:\n    source: aws\n    external_id: x\n", "t.yaml:4: roles.r.external_id: only applies with role_arn"},
		{"duration out of range", "roles:\n  r:\n    source: aws\n    role_arn: arn:aws:iam::123456789012:role/x\n    duration: 13h\n",
			"t.yaml:5: roles.r.duration: must be between 15m and 12h, got 13h"},
		{"process without command", "roles:\n  r:\n    source: process\n", "t.yaml:2: roles.r.command: is required for source process"},
		{"empty command", "roles:\n  r:\n    source: process\n    command: []\n", "t.yaml:4: roles.r.command: must name a program"},
		{"unknown key", "roles:\n  r:\n    sorce: aws\n", "t.yaml:3: roles.r.sorce: unknown key"},
		{"bad name", "roles:\n  \"a b\": {}\n", "t.yaml:2: roles.a b: role names are 1-64 characters of letters, digits and +=,.@_-"},
		{"bad profile id", "roles:\n  r:\n    instance_profile_id: XYZ\n", `t.yaml:3: roles.r.instance_profile_id: must start with AIPA, got "XYZ"`},
		{"not a mapping", "roles: [a]\n", "t.yaml:1: roles: must be a mapping of role names to their credentials, got a list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.src), "testdata")
			if err == nil {
				t.Fatalf("Parse succeeded, want %s", tt.want)
			}
			if got := err.Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRoleSecretsNotInErrors(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	_, err := Parse("t.yaml", []byte("roles:\n  r:\n    source: aws\n    secret_access_key: "+secret+"\n"), "testdata")
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("err=%v: want an error that does not repeat the secret", err)
	}
}
