package config

import (
	"errors"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// errNoFiles refuses file references in documents that come over the admin
// API: the server must not read its own files on a client's behalf.
var errNoFiles = errors.New("documents sent to the server cannot reference files; inline the content (user_data, user_data_base64, key)")

// ParseInstances decodes instance definitions in the schema of instance:
// from YAML or JSON: one mapping, a list of them, or a mapping with an
// instances: list. Decoding is as strict as for the config file; every
// problem is reported as "NAME:LINE: field: problem". Each definition needs a
// name. It returns specs, before derivation. File references are refused.
func ParseInstances(name string, data []byte) ([]*ec2.Instance, error) {
	return parseInstances(name, data, "", func(string, int64) ([]byte, error) { return nil, errNoFiles })
}

// LoadInstances reads instance definitions from a local file, resolving
// user_data_file and key_file against its directory (for the CLI, which
// sends the result with the files inlined). readFiles tells whether the
// document referenced any file: if not, it can be sent as it is.
func LoadInstances(path string) (specs []*ec2.Instance, readFiles bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, &Error{File: path, Line: 1, Field: "file", Problem: readError(path, err)}
	}
	specs, err = parseInstances(path, data, filepath.Dir(path), func(path string, limit int64) ([]byte, error) {
		readFiles = true
		return readLimited(path, limit)
	})
	return specs, readFiles, err
}

func parseInstances(name string, data []byte, baseDir string, read readFunc) ([]*ec2.Instance, error) {
	d := newDecoder(name, baseDir, read)
	var defs []*Instance
	if root := d.document(data); root != nil {
		rv := resolve(root)
		switch {
		case rv.Kind == yaml.SequenceNode:
			defs = d.instanceList("", 1, root)
		case rv.Kind == yaml.MappingNode && hasKey(rv, "instances"):
			d.mapping("", 1, root, schema{"instances": func(p string, l int, v *yaml.Node) { defs = d.instanceList(p, l, v) }})
		case rv.Kind == yaml.MappingNode:
			if ci := d.instanceDef("", rv.Line, root); ci != nil {
				defs = []*Instance{ci}
			}
		default:
			d.errorf(rv.Line, "", "must be an instance definition, a list of them or a mapping with instances:, got %s", describe(rv))
		}
	}
	if len(defs) == 0 && len(d.errs) == 0 {
		d.errorf(1, "", "no instance definition found")
	}
	for _, ci := range defs {
		if len(ci.schedule) > 0 {
			d.errorf(ci.schedule[0].Line, sub(ci.prefix, "schedule"), "is read from the config file only; trigger events with imds event")
		}
	}
	f := &File{name: name, lines: d.lines, Instances: defs}
	if !d.exhausted() {
		_, errs := f.buildAll(ec2.DeriveOptions{})
		for _, e := range errs {
			if !d.isCovered(e.Field) {
				d.errs = append(d.errs, e)
			}
		}
	}
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	out := make([]*ec2.Instance, len(defs))
	for i, ci := range defs {
		out[i] = ci.base // defs go no further: no copy needed
	}
	return out, nil
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}
