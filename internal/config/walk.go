package config

import (
	"encoding/base64"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// This file decodes the document types (document.go) from a yaml.Node tree,
// driven by their fields: a struct is a mapping of its json names, string,
// int, bool and []string are what they say, and types with a YAML form of
// their own implement nodeDecoder. Every problem is reported with its line
// through the decoder, as for the rest of the config file.

// nodeDecoder is a document type that decodes itself. decodeNode reports
// whether it set the value; null (an absent value) is passed to it too.
type nodeDecoder interface {
	decodeNode(d *decoder, path string, line int, v *yaml.Node) bool
}

// fieldInfo is one field of a document struct, from its tags.
type fieldInfo struct {
	name  string
	index int
	// From the check tag: min= and max= bound an int (0 and MaxInt32
	// unless set), enum=a|b lists the words a string may be, nullable lets
	// null clear a pointer, required reports a missing key, and
	// shorthand=KEY names the key of interface 0 the field stands for.
	min, max   int
	dmin, dmax time.Duration // bounds of a time.Duration
	enum       []string
	// text names a check of a string: hostport (an address to listen
	// on), path (a file path, resolved against the document's directory;
	// "" is absent) or group (a group name or number; "" is absent).
	text      string
	nullable  bool
	required  bool
	shorthand string
}

// defaultField bounds values that have no field of their own (list items).
func defaultField() fieldInfo { return fieldInfo{max: math.MaxInt32} }

// keyAt is a key seen in the file; line 0 means not seen.
type keyAt struct {
	path string
	line int
	null bool // the value is null
}

// structInfo is what decoding needs of a document struct type.
type structInfo struct {
	fields []fieldInfo
	byName map[string]int // index into fields
	keys   []string       // sorted, for hints
}

// fieldsOf returns the decodable fields of the struct type t.
func (d *decoder) fieldsOf(t reflect.Type) []fieldInfo { return d.structOf(t).fields }

// structOf reads the fields of the struct type t, memoized per decoder.
func (d *decoder) structOf(t reflect.Type) *structInfo {
	if si, ok := d.fields[t]; ok {
		return si
	}
	si := &structInfo{byName: map[string]int{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		f := defaultField()
		f.name, f.index = name, i
		for opt := range strings.SplitSeq(sf.Tag.Get("check"), ",") {
			key, val, _ := strings.Cut(opt, "=")
			var err error
			switch key {
			case "":
			case "min":
				if sf.Type == reflect.TypeFor[time.Duration]() {
					f.dmin, err = time.ParseDuration(val)
				} else {
					f.min, err = strconv.Atoi(val)
				}
			case "max":
				if sf.Type == reflect.TypeFor[time.Duration]() {
					f.dmax, err = time.ParseDuration(val)
				} else {
					f.max, err = strconv.Atoi(val)
				}
			case "hostport", "path", "group":
				f.text = key
			case "enum":
				f.enum = strings.Split(val, "|")
			case "nullable":
				f.nullable = true
			case "required":
				f.required = true
			case "shorthand":
				f.shorthand = val
			default:
				err = strconv.ErrSyntax
			}
			if err != nil {
				// A mistake in document.go, which every test run finds.
				panic("config: " + t.String() + "." + sf.Name + ": bad check tag " + strconv.Quote(opt))
			}
		}
		si.byName[name] = len(si.fields)
		si.fields = append(si.fields, f)
		si.keys = append(si.keys, name)
	}
	slices.Sort(si.keys)
	if d.fields == nil {
		d.fields = map[reflect.Type]*structInfo{}
	}
	d.fields[t] = si
	return si
}

// keyNames returns the keys of the document struct type t.
func (d *decoder) keyNames(t reflect.Type) []string { return d.structOf(t).keys }

// decodeStruct decodes the mapping v into dst, an addressable struct. It
// returns the keys written (null ones too) and false if v is null, not a
// mapping or lacks a required key (or sets it to null).
func (d *decoder) decodeStruct(path string, line int, v *yaml.Node, dst reflect.Value) (map[string]keyAt, bool) {
	si := d.structOf(dst.Type())
	seen := map[string]keyAt{}
	if !d.walkMapping(path, line, v, si.keys, func(e entry, p string) bool {
		i, ok := si.byName[e.name]
		if !ok {
			return false
		}
		f := si.fields[i]
		null := isNull(resolve(e.value))
		seen[f.name] = keyAt{path: p, line: e.line, null: null}
		if f.shorthand != "" && !null {
			// ec2.Validate names interface 0's field; point it at the shorthand.
			d.mark(sub(path, "network_interfaces[0]."+f.shorthand), e.line)
		}
		d.value(p, e.line, e.value, dst.Field(f.index), f)
		return true
	}) {
		return seen, false
	}
	ok := true
	for _, f := range si.fields {
		if k, set := seen[f.name]; f.required && (!set || k.null) {
			d.errorf(line, join(path, f.name), "is required")
			ok = false
		}
	}
	return seen, ok
}

// value decodes v into fv as f says; false if v is null or invalid
// (reported). A scalar or a list is then left as it was; a struct keeps
// the keys that were valid.
func (d *decoder) value(p string, l int, v *yaml.Node, fv reflect.Value, f fieldInfo) bool {
	if nd, ok := fv.Addr().Interface().(nodeDecoder); ok {
		return nd.decodeNode(d, p, l, v)
	}
	if fv.Type() == reflect.TypeFor[time.Duration]() {
		dur, ok := d.duration(p, l, v, f.dmin, f.dmax)
		if ok {
			fv.SetInt(int64(dur))
		}
		return ok
	}
	switch fv.Kind() {
	case reflect.Pointer:
		if isNull(resolve(v)) {
			if f.nullable {
				fv.SetZero()
			}
			return f.nullable
		}
		nv := reflect.New(fv.Type().Elem())
		if !d.value(p, l, v, nv.Elem(), f) {
			return false
		}
		fv.Set(nv)
	case reflect.String:
		s, ok := "", false
		if f.enum != nil {
			s, ok = d.enum(p, l, v, f.enum...)
		} else {
			s, ok = d.str(p, l, v)
		}
		if !ok || !d.checkText(p, l, &s, f.text) {
			return false
		}
		fv.SetString(s)
	case reflect.Int:
		n, ok := d.integer(p, l, v, f.min, f.max)
		if !ok {
			return false
		}
		fv.SetInt(int64(n))
	case reflect.Bool:
		b, ok := d.boolean(p, l, v)
		if !ok {
			return false
		}
		fv.SetBool(b)
	case reflect.Slice:
		if fv.Type().Elem().Kind() == reflect.String {
			s, ok := d.strs(p, l, v)
			if !ok {
				return false
			}
			fv.Set(reflect.ValueOf(s).Convert(fv.Type()))
			return true
		}
		out := reflect.MakeSlice(fv.Type(), 0, 0)
		if !d.list(p, l, v, func(_ int, ip string, il int, it *yaml.Node) {
			ev := reflect.New(fv.Type().Elem()).Elem()
			d.value(ip, il, it, ev, defaultField())
			out = reflect.Append(out, ev)
		}) {
			return false
		}
		fv.Set(out)
	case reflect.Struct:
		_, ok := d.decodeStruct(p, l, v, fv)
		return ok
	default:
		panic("config: no decoder for " + fv.Type().String())
	}
	return true
}

// checkText applies the text check of a field to *s, which it may rewrite.
func (d *decoder) checkText(p string, l int, s *string, check string) bool {
	switch check {
	case "hostport":
		return d.hostPort(p, l, *s)
	case "path":
		if *s == "" {
			return false
		}
		*s = d.resolvePath(*s)
	case "group":
		if *s == "" {
			return false
		}
		if !validGroupName(*s) {
			d.errorf(l, p, "%q is not a group name or number", *s)
			return false
		}
	}
	return true
}

// section returns the decoder of a settings section into the struct dst
// points to.
func (d *decoder) section(dst any) field {
	return func(p string, l int, v *yaml.Node) {
		d.decodeStruct(p, l, v, reflect.ValueOf(dst).Elem())
	}
}

// decodeNode decodes an instance name: a YAML or JSON string (not a
// number: `{"name":123}` is a mistake, not the name "123") in the grammar of
// ec2.CheckName.
func (n *Name) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	s, ok := d.nameValue(p, l, v)
	if ok {
		*n = Name(s)
	}
	return ok
}

func (d *decoder) nameValue(p string, line int, v *yaml.Node) (string, bool) {
	rv := resolve(v)
	if rv.Kind != yaml.ScalarNode || rv.ShortTag() != "!!str" {
		if rv.Kind == yaml.ScalarNode && isText(rv) {
			d.errorf(line, p, "must be a string, got %s (quote it)", describe(rv))
		} else {
			d.errorf(line, p, "must be a string, got %s", describe(rv))
		}
		return "", false
	}
	if err := ec2.CheckName(rv.Value); err != nil {
		d.errorf(line, p, "%s", ec2.ErrorMessage(err))
		return "", false
	}
	return rv.Value, true
}

func (t *Timestamp) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	s, ok := d.str(p, l, v)
	if !ok {
		return false
	}
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.errorf(l, p, "must be an RFC 3339 timestamp like 2024-05-01T12:00:00Z, got %q", s)
		return false
	}
	t.Time = tm
	return true
}

// decodeNode decodes a list of {name, id} mappings or plain names.
func (g *SecurityGroups) decodeNode(d *decoder, path string, line int, v *yaml.Node) bool {
	groups := SecurityGroups{}
	valid := true
	present := d.list(path, line, v, func(_ int, p string, l int, it *yaml.Node) {
		ri := resolve(it)
		switch {
		case ri.Kind == yaml.MappingNode:
			var sg SecurityGroupDoc
			if _, ok := d.decodeStruct(p, l, it, reflect.ValueOf(&sg).Elem()); !ok {
				valid = false
			}
			groups = append(groups, sg)
		case isText(ri) && ri.Value != "":
			groups = append(groups, SecurityGroupDoc{Name: ri.Value})
		default:
			d.errorf(l, p, "must be a group name or {name, id}, got %s", describe(ri))
			valid = false
		}
	})
	if !present || !valid {
		return false
	}
	*g = groups
	return true
}

// decodeNode decodes tags: a mapping of keys to text values.
func (t *Tags) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	es, ok := d.mappingEntries(p, l, v, "a mapping of keys to values")
	if !ok {
		return false
	}
	tags := Tags{}
	for _, e := range es {
		tv := resolve(e.value)
		if !isText(tv) && !isNull(tv) {
			d.errorf(e.line, p, "value of %q must be a string, got %s", e.name, describe(tv))
			continue
		}
		// A null value is an empty tag value, which EC2 allows; the
		// literal text of a number or boolean is what the user wrote.
		val := tv.Value
		if isNull(tv) {
			val = ""
		}
		tags = append(tags, ec2.Tag{Key: e.name, Value: val})
	}
	*t = tags
	return true
}

// decodeNode decodes block_devices: a mapping of names to devices.
func (b *BlockDevices) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	es, ok := d.mappingEntries(p, l, v, "a mapping of names to devices")
	if !ok {
		return false
	}
	devs := BlockDevices{}
	for i, e := range es {
		// ec2.Validate names devices by position.
		d.mark(p+"["+strconv.Itoa(i)+"]", e.line)
		dev, ok := d.str(join(p, e.name), e.line, e.value)
		if !ok && !isNull(resolve(e.value)) {
			continue
		}
		devs = append(devs, ec2.BlockDevice{Name: e.name, Device: dev})
	}
	*b = devs
	return true
}

// decodeNode decodes one item of network_interfaces.
func (ni *InterfaceDoc) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	if isNull(resolve(v)) {
		d.errorf(l, p, "must be a mapping, got null; use {} for an interface with derived values")
		return false
	}
	_, ok := d.decodeStruct(p, l, v, reflect.ValueOf(ni).Elem())
	return ok
}

// decodeNode decodes one item of public_keys, reading key_file.
func (k *PublicKeyDoc) decodeNode(d *decoder, path string, line int, v *yaml.Node) bool {
	if rv := resolve(v); rv.Kind != yaml.MappingNode {
		d.errorf(line, path, "must be a mapping {name, key} or {name, key_file}, got %s", describe(rv))
		return false
	}
	seen, _ := d.decodeStruct(path, line, v, reflect.ValueOf(k).Elem())
	key, file := seen["key"], seen["key_file"]
	if !file.null && file.line > 0 {
		d.mark(path+".key", file.line)
	}
	switch {
	case key.line > 0 && !key.null && file.line > 0 && !file.null:
		second := file
		if key.line > file.line {
			second = key
		}
		d.errorf(second.line, second.path, "key and key_file cannot both be set; choose one")
		d.covered[path+".key"] = true
	case file.line > 0 && k.KeyFile != "":
		resolved := d.resolvePath(string(k.KeyFile))
		data, err := d.read(resolved, maxPublicKeyFile)
		if err != nil {
			d.errorf(file.line, file.path, "%s", readError(resolved, err))
			d.covered[path+".key"] = true
			break
		}
		// Key files end with a newline that is not part of the key.
		k.Key, k.KeyFile = strings.TrimSpace(string(data)), ""
	case (key.line == 0 || key.null) && (file.line == 0 || file.null):
		d.errorf(line, path, "needs key or key_file")
	case file.line > 0:
		d.covered[path+".key"] = true // key_file: null or a bad value, already reported
	}
	return true
}

// decodeNode decodes role: a name or a mapping; "" is no instance profile
// (as null is, which the nullable field handles).
func (r *RoleDoc) decodeNode(d *decoder, path string, line int, v *yaml.Node) bool {
	rv := resolve(v)
	switch {
	case rv.Kind == yaml.MappingNode:
		var m RoleDoc
		if _, ok := d.decodeStruct(path, line, v, reflect.ValueOf(&m).Elem()); !ok {
			// Keep the default role rather than also failing validation.
			return false
		}
		*r = m
		return true
	case isText(rv):
		*r = RoleDoc{Name: rv.Value, none: rv.Value == ""}
		return true
	}
	d.errorf(line, path, "must be a role name, a mapping {name, instance_profile_name, instance_profile_id} or null, got %s", describe(rv))
	return false
}

// decodeNode decodes user data as text or !!binary.
func (u *UserData) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	rv := resolve(v)
	if rv.Kind == yaml.ScalarNode && rv.ShortTag() == "!!binary" {
		data, err := binary(rv)
		if err != nil {
			d.errorf(l, p, "!!binary value is not valid base64")
			return false
		}
		*u = data
		return true
	}
	s, ok := d.str(p, l, v)
	if ok {
		*u = UserData(s)
	}
	return ok
}

// decodeNode decodes standard base64, which carries binary user data in
// JSON documents.
func (b *Base64) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	s, ok := d.str(p, l, v)
	if !ok {
		return false
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		d.errorf(l, p, "must be standard base64")
		return false
	}
	*b = data
	return true
}

func (f *FilePath) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	s, ok := d.str(p, l, v)
	if !ok {
		return false
	}
	if s == "" {
		d.errorf(l, p, "must be a file path, got an empty string")
		return false
	}
	*f = FilePath(s)
	return true
}

func (f *Faults) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	s, ok := d.str(p, l, v)
	if !ok {
		return false
	}
	if _, err := ec2.ParseFaults(s); err != nil {
		d.errorf(l, p, "%s", ec2.ErrorMessage(err))
		return false
	}
	*f = Faults(s)
	return true
}

func (s *Schedule) decodeNode(d *decoder, p string, l int, v *yaml.Node) bool {
	*s = d.scheduleList(p, l, v)
	return true
}

// decodeNode ignores events: documents the server wrote show them, and
// they are changed with imds event.
func (*EventsDoc) decodeNode(*decoder, string, int, *yaml.Node) bool { return false }
