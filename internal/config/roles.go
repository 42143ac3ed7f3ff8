package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Credential sources of a role.
const (
	SourceFake    = "fake"
	SourceStatic  = "static"
	SourceAWS     = "aws"
	SourceProcess = "process"
)

// Role is one entry of roles: where a role's credentials come from, and its
// instance profile.
type Role struct {
	Name string
	// Line is where the role is defined, for messages about it later.
	Line int
	// Source is fake (generated), static, aws or process.
	Source string

	InstanceProfileName string
	InstanceProfileID   string

	// static: keys; empty means the standard AWS_* environment variables.
	AccessKeyID, SecretAccessKey, SessionToken string

	// aws: the host's AWS configuration, optionally followed by AssumeRole.
	Profile, Region, RoleARN, ExternalID, SessionName, SourceProfile string
	Duration                                                         time.Duration

	// process: a credential_process command, either as argv or as one
	// command line that the caller splits the way the AWS CLI does.
	Command     []string
	CommandLine string
	Timeout     time.Duration
}

var (
	reRoleARN     = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)
	reSessionName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// roleKeys lists which keys each source accepts besides source and the
// instance profile keys.
var roleKeys = map[string][]string{
	SourceFake:    nil,
	SourceStatic:  {"access_key_id", "secret_access_key", "session_token"},
	SourceAWS:     {"profile", "region", "role_arn", "external_id", "session_name", "duration", "source_profile"},
	SourceProcess: {"command", "timeout"},
}

// roles decodes the roles: mapping of role names to their definitions.
func (d *decoder) roles(path string, line int, v *yaml.Node, f *File) {
	es, _ := d.mappingEntries(path, line, v, "a mapping of role names to their credentials")
	for _, e := range es {
		p := path + "." + e.name
		if !reRoleNameConfig.MatchString(e.name) {
			d.errorf(e.line, p, "role names are 1-64 characters of letters, digits and +=,.@_-")
			continue
		}
		if r, ok := d.role1(p, e.line, e.value); ok {
			r.Name = e.name
			f.Roles = append(f.Roles, r)
		}
	}
}

var reRoleNameConfig = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

func (d *decoder) role1(path string, line int, v *yaml.Node) (Role, bool) {
	r := Role{Line: line, Source: SourceFake}
	if isNull(resolve(v)) {
		return r, true
	}
	given := map[string]int{}
	str := func(dst *string) field {
		return func(p string, l int, v *yaml.Node) {
			given[p[strings.LastIndexByte(p, '.')+1:]] = l
			if s, ok := d.str(p, l, v); ok {
				*dst = s
			}
		}
	}
	ok := d.mapping(path, line, v, schema{
		"source": func(p string, l int, v *yaml.Node) {
			if s, ok := d.enum(p, l, v, SourceFake, SourceStatic, SourceAWS, SourceProcess); ok {
				r.Source = s
			}
		},
		"instance_profile_name": str(&r.InstanceProfileName),
		"instance_profile_id":   str(&r.InstanceProfileID),
		"access_key_id":         str(&r.AccessKeyID),
		"secret_access_key":     str(&r.SecretAccessKey),
		"session_token":         str(&r.SessionToken),
		"profile":               str(&r.Profile),
		"region":                str(&r.Region),
		"role_arn":              str(&r.RoleARN),
		"external_id":           str(&r.ExternalID),
		"session_name":          str(&r.SessionName),
		"source_profile":        str(&r.SourceProfile),
		"duration": func(p string, l int, v *yaml.Node) {
			given["duration"] = l
			if dur, ok := d.duration(p, l, v, 15*time.Minute, 12*time.Hour); ok {
				r.Duration = dur
			}
		},
		"timeout": func(p string, l int, v *yaml.Node) {
			given["timeout"] = l
			if dur, ok := d.duration(p, l, v, time.Second, 10*time.Minute); ok {
				r.Timeout = dur
			}
		},
		"command": func(p string, l int, v *yaml.Node) {
			given["command"] = l
			rv := resolve(v)
			if rv.Kind == yaml.SequenceNode {
				if argv, ok := d.strs(p, l, v); ok {
					if len(argv) == 0 || argv[0] == "" {
						d.errorf(l, p, "must name a program")
					}
					r.Command = argv
				}
				return
			}
			if s, ok := d.str(p, l, v); ok {
				if strings.TrimSpace(s) == "" {
					d.errorf(l, p, "must name a program")
				}
				r.CommandLine = s
			}
		},
	})
	if !ok {
		return r, false
	}
	valid := true
	bad := func(key, format string, args ...any) {
		d.errorf(given[key], path+"."+key, format, args...)
		valid = false
	}
	allowed := roleKeys[r.Source]
	for key, l := range given {
		if !slices.Contains(allowed, key) && key != "instance_profile_name" && key != "instance_profile_id" {
			d.errorf(l, path+"."+key, "only applies to source %s, but this role's source is %s", sourceOf(key), r.Source)
			valid = false
		}
	}
	if r.InstanceProfileID != "" && !strings.HasPrefix(r.InstanceProfileID, "AIPA") {
		bad("instance_profile_id", "must start with AIPA, got %q", r.InstanceProfileID)
	}
	switch r.Source {
	case SourceStatic:
		if (r.AccessKeyID == "") != (r.SecretAccessKey == "") {
			key := "access_key_id"
			if r.SecretAccessKey == "" {
				key = "secret_access_key"
			}
			d.errorf(line, path+"."+key, "access_key_id and secret_access_key go together (leave both out to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
			valid = false
		}
	case SourceAWS:
		if r.RoleARN != "" && !reRoleARN.MatchString(r.RoleARN) {
			bad("role_arn", "must look like arn:aws:iam::123456789012:role/name, got %q", r.RoleARN)
		}
		if r.SessionName != "" && !reSessionName.MatchString(r.SessionName) {
			bad("session_name", "must be 2-64 characters of letters, digits and +=,.@_-, got %q", r.SessionName)
		}
		for _, key := range []string{"external_id", "session_name", "duration", "source_profile"} {
			if _, ok := given[key]; ok && r.RoleARN == "" {
				bad(key, "only applies with role_arn")
			}
		}
	case SourceProcess:
		if _, ok := given["command"]; !ok {
			d.errorf(line, path+".command", "is required for source process")
			valid = false
		}
	}
	return r, valid
}

// sourceOf names the source a role key belongs to.
func sourceOf(key string) string {
	for src, keys := range roleKeys {
		if slices.Contains(keys, key) {
			return src
		}
	}
	return "?"
}

// RoleNamed returns the role defined under roles: with that name.
func (f *File) RoleNamed(name string) (Role, bool) {
	for _, r := range f.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

func (r Role) String() string {
	return fmt.Sprintf("role %s (source %s)", r.Name, r.Source)
}
