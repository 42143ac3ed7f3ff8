package ec2

import (
	"slices"
	"strings"
)

// InstanceUpdate is a partial change of an instance spec: only the fields
// it sets change, the rest of the spec stays as it is. The CLI's `instance
// set`, the libvirt hook and the admin API's PATCH all apply one, so that
// the registry applies it under its lock and two writers cannot lose each
// other's change. In JSON an absent field and null both leave the field as
// it is, so a list or user data to clear must be sent empty, not nil.
type InstanceUpdate struct {
	// ID replaces the instance ID.
	ID *string `json:"id,omitempty"`
	// SourceAddrs replaces the source addresses (empty clears them).
	SourceAddrs *[]string `json:"source_addresses,omitempty"`
	// MAC replaces the MAC of the primary interface; requests are then
	// matched by it (MatchMAC), unless it is "".
	MAC *string `json:"mac,omitempty"`
	// Role names the role of the instance profile; "" removes the profile.
	// The same name as today keeps the role as it is.
	Role *string `json:"role,omitempty"`
	// UserData replaces the user data (empty removes it).
	UserData *[]byte `json:"user_data,omitempty"`
	// InstanceType replaces the instance type.
	InstanceType *string `json:"instance_type,omitempty"`
	// Region replaces the region; a zone of the old region is dropped (and
	// derived again) unless AvailabilityZone is set too.
	Region *string `json:"region,omitempty"`
	// AvailabilityZone replaces the zone; its ID is derived again.
	AvailabilityZone *string `json:"availability_zone,omitempty"`
	// HTTPTokens replaces the IMDSv2 mode (optional or required).
	HTTPTokens *string `json:"imdsv2,omitempty"`
	// HopLimit replaces the hop limit of token responses.
	HopLimit *int `json:"hop_limit,omitempty"`
	// PublicKeys replaces the list of public keys.
	PublicKeys *[]PublicKey `json:"public_keys,omitempty"`
	// Host pins the instance to the named imds host; "" unpins it.
	Host *string `json:"host,omitempty"`
	// Tags are set or removed one by one, in order.
	Tags []TagEdit `json:"tags,omitempty"`
}

// TagEdit sets the tag Key to Value, or removes it.
type TagEdit struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// IsZero reports whether u changes nothing.
func (u InstanceUpdate) IsZero() bool {
	return u.ID == nil && u.SourceAddrs == nil && u.MAC == nil && u.Role == nil && u.UserData == nil &&
		u.InstanceType == nil && u.Region == nil && u.AvailabilityZone == nil && u.HTTPTokens == nil &&
		u.HopLimit == nil && u.PublicKeys == nil && u.Host == nil && len(u.Tags) == 0
}

// Validate checks what Instance.Validate cannot see once the update is
// applied. Returns EINVALID naming the field.
func (u InstanceUpdate) Validate() error {
	for i, t := range u.Tags {
		if t.Key == "" {
			return Errorf(EINVALID, "tags[%d].key: must not be empty", i)
		}
		if t.Remove && t.Value != "" {
			return Errorf(EINVALID, "tags[%d]: a tag to remove has no value", i)
		}
	}
	return nil
}

// Apply changes spec as u says, and only that. The result is not
// validated: the registry validates the whole spec afterwards.
func (u InstanceUpdate) Apply(spec *Instance) {
	if u.ID != nil {
		spec.ID = *u.ID
	}
	if u.SourceAddrs != nil {
		spec.SourceAddrs = slices.Clone(*u.SourceAddrs)
	}
	if u.MAC != nil {
		if len(spec.Interfaces) == 0 {
			spec.Interfaces = []NetworkInterface{{}}
		}
		spec.Interfaces[spec.primaryIndex()].MAC = *u.MAC
		spec.MatchMAC = *u.MAC != ""
	}
	if u.Role != nil {
		switch {
		case *u.Role == "":
			spec.Role = nil
		case spec.Role == nil || spec.Role.Name != *u.Role:
			spec.Role = &Role{Name: *u.Role}
		}
	}
	if u.UserData != nil {
		spec.UserData = nil
		if len(*u.UserData) > 0 {
			spec.UserData = slices.Clone(*u.UserData)
		}
	}
	if u.InstanceType != nil {
		spec.InstanceType = *u.InstanceType
	}
	if u.Region != nil {
		if spec.AvailabilityZone != "" && !strings.HasPrefix(spec.AvailabilityZone, *u.Region) {
			// The zone belonged to the old region: derive a new one.
			spec.AvailabilityZone, spec.AvailabilityZoneID = "", ""
		}
		spec.Region = *u.Region
	}
	if u.AvailabilityZone != nil {
		if spec.AvailabilityZone != *u.AvailabilityZone {
			spec.AvailabilityZoneID = ""
		}
		spec.AvailabilityZone = *u.AvailabilityZone
	}
	if u.HTTPTokens != nil {
		spec.Metadata.HTTPTokens = *u.HTTPTokens
	}
	if u.HopLimit != nil {
		spec.Metadata.PutResponseHopLimit = *u.HopLimit
	}
	if u.PublicKeys != nil {
		spec.PublicKeys = slices.Clone(*u.PublicKeys)
	}
	if u.Host != nil {
		spec.Host = *u.Host
	}
	for _, e := range u.Tags {
		if e.Remove {
			spec.Tags = slices.DeleteFunc(spec.Tags, func(t Tag) bool { return t.Key == e.Key })
		} else {
			spec.Tags = spec.SetTag(e.Key, e.Value)
		}
	}
}

// SetTag returns the tags of i with key set to value: changed in place
// when the key exists, appended otherwise.
func (i *Instance) SetTag(key, value string) []Tag {
	for n, t := range i.Tags {
		if t.Key == key {
			i.Tags[n].Value = value
			return i.Tags
		}
	}
	return append(i.Tags, Tag{Key: key, Value: value})
}

// HasTag reports whether i has the tag key=value.
func (i *Instance) HasTag(key, value string) bool {
	return slices.Contains(i.Tags, Tag{Key: key, Value: value})
}

// primaryIndex is the index of the interface Primary returns.
func (i *Instance) primaryIndex() int {
	for n, ni := range i.Interfaces {
		if ni.DeviceNumber == 0 {
			return n
		}
	}
	return 0
}

// Ptr returns a pointer to v, for the fields of an InstanceUpdate.
func Ptr[T any](v T) *T { return &v }
