package docker

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/imdsdev/imds/internal/ec2"
)

// Prefix starts every label imds reads.
const Prefix = "imds."

// The labels imds reads, besides Prefix+"tag.<key>".
const (
	LabelEnable       = Prefix + "enable"
	LabelName         = Prefix + "name"
	LabelRole         = Prefix + "role"
	LabelInstanceType = Prefix + "instance-type"
	LabelUserData     = Prefix + "user-data"
	LabelIMDSv2       = Prefix + "imdsv2"
	LabelTagPrefix    = Prefix + "tag."
)

// Compose's labels, which become tags.
const (
	composeProject = "com.docker.compose.project"
	composeService = "com.docker.compose.service"
)

// knownLabels lists the labels, for messages about unknown ones.
func knownLabels() []string {
	return []string{LabelEnable, LabelName, LabelRole, LabelInstanceType, LabelUserData, LabelIMDSv2, LabelTagPrefix + "<key>"}
}

var (
	reInstanceType = regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+$`)
	reRoleName     = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
)

// Labels are what a container's labels ask of its instance.
type Labels struct {
	// Enable is nil when imds.enable is absent, so that imds.enable=false
	// opts a container out even with all: true.
	Enable       *bool
	Name         string
	Role         string
	InstanceType string
	// UserData is nil without imds.user-data.
	UserData []byte
	IMDSv2   string
	// Tags are imds.tag.<key> (sorted by key), then compose's project and
	// service as compose:project and compose:service.
	Tags []ec2.Tag
}

// ParseLabels reads the imds.* labels of a container (and compose's) and
// returns every problem with them, each naming the label: a container with
// a bad label is not served rather than served as something it did not ask
// for (imds.imdsv2=requierd must not mean optional).
func ParseLabels(labels map[string]string) (Labels, error) {
	var l Labels
	var errs []error
	bad := func(label, format string, args ...any) {
		errs = append(errs, fmt.Errorf("label %s: %s", printable(label), fmt.Sprintf(format, args...)))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := labels[k]
		if !strings.HasPrefix(k, Prefix) {
			continue
		}
		switch k {
		case LabelEnable:
			switch v {
			case "true", "false":
				on := v == "true"
				l.Enable = &on
			default:
				bad(k, "must be true or false, got %s", printable(v))
			}
		case LabelName:
			if err := ec2.CheckName(v); err != nil {
				bad(k, "%s", ec2.ErrorMessage(err))
			} else {
				l.Name = v
			}
		case LabelRole:
			if !reRoleName.MatchString(v) {
				bad(k, "must be a role name of 1-64 letters, digits and +=,.@_-, got %s", printable(v))
			} else {
				l.Role = v
			}
		case LabelInstanceType:
			if !reInstanceType.MatchString(v) {
				bad(k, "must look like m5.large, got %s", printable(v))
			} else {
				l.InstanceType = v
			}
		case LabelUserData:
			l.UserData = []byte(v)
		case LabelIMDSv2:
			switch v {
			case ec2.TokensOptional, ec2.TokensRequired:
				l.IMDSv2 = v
			default:
				bad(k, "must be optional or required, got %s", printable(v))
			}
		default:
			key, ok := strings.CutPrefix(k, LabelTagPrefix)
			switch {
			case !ok:
				bad(k, "unknown label%s (imds reads %s)", suggest(k), strings.Join(knownLabels(), ", "))
			case key == "":
				bad(k, "needs a tag key after %s", LabelTagPrefix)
			default:
				l.Tags = append(l.Tags, ec2.Tag{Key: key, Value: v})
			}
		}
	}
	if p, ok := labels[composeProject]; ok {
		l.Tags = append(l.Tags, ec2.Tag{Key: "compose:project", Value: p})
	}
	if s, ok := labels[composeService]; ok {
		l.Tags = append(l.Tags, ec2.Tag{Key: "compose:service", Value: s})
	}
	return l, errors.Join(errs...)
}

// suggest names the known label closest to an unknown one.
func suggest(label string) string {
	best, bestD := "", 3
	for _, k := range knownLabels() {
		if d := distance(label, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// distance is the Levenshtein distance, bounded to short labels.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// printable quotes what a container says, bounded, so that a label cannot
// forge log lines or flood them.
func printable(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
