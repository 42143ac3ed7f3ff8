package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imdsdev/imds/internal/ec2"
)

// fakeRead stands in for the file system: fuzzed paths must not read real
// files (/dev/stdin would block), yet both outcomes of a read are exercised.
func fakeRead(path string, limit int64) ([]byte, error) {
	switch {
	case strings.Contains(path, "missing"):
		return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
	case strings.HasSuffix(path, ".pub"):
		return []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ1enotZnV6ei1mdXp6 fuzz\n"), nil
	case int64(len(path)) > limit:
		return nil, errors.New("too large")
	}
	return []byte("\x1f\x8b\x08" + path), nil
}

// reErrorLine is the shape of every line of an error report.
var reErrorLine = regexp.MustCompile(`^fuzz\.yaml:[1-9][0-9]*: \S`)

func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		"instance:\n  role: null\n  public_ipv4: \"\"\n  mac: 06:00:00:00:00:01\n",
		"instance:\n  tags: &t {<<: *t}\n",
		"instance:\n  network_interfaces: &n [*n]\n",
		"instance:\n  availability_zone: x\n  user_data: !!binary aGk=\n",
		"instance:\n  public_keys: [{name: a, key_file: a.pub}, {name: b, key_file: missing}]\n",
		"credentials: {lifetime: 20m, rotate_after: 5m}\nlisten: \"[::1]:0\"\n",
		"? [a]\n: b\n<<: {c: d}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parse("fuzz.yaml", data, "base", fakeRead)
		if err != nil {
			if file != nil {
				t.Errorf("Parse returned a File and an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !reErrorLine.MatchString(line) {
					t.Errorf("error line %q is not FILE:LINE: PROBLEM", line)
				}
			}
			return
		}
		if len(file.Listen) == 0 || file.Credentials.Lifetime == 0 || file.Credentials.RotateAfter == 0 {
			t.Errorf("Parse left defaults unset: %+v", file)
		}
		// Parse has validated the instance already; a different seed only
		// changes derived values, which are always valid.
		if _, err := file.BuildInstance(ec2.DeriveOptions{Seed: []byte("fuzz")}); err != nil {
			t.Errorf("Parse accepted a file that BuildInstance rejects:\n%v", err)
		}
	})
}

// FuzzInstanceDocument checks that decoding and encoding use one schema:
// whatever ParseInstances accepts, MarshalInstance writes a document that
// ParseInstances reads back as a spec that derives to the same instance.
func FuzzInstanceDocument(f *testing.F) {
	for _, s := range []string{
		"name: a\n",
		`{"name":"a","role":null,"public_ipv4":"","tags":{"k":7}}`,
		"- name: a\n  user_data: !!binary H4sI\n- name: b\n  network_interfaces: [{device_number: 1, public_ipv4s: []}]\n",
		"name: a\nsecurity_groups: [web, {name: ssh, id: sg-1}]\nblock_devices: {root: /dev/xvda}\n",
		"name: a\npending_time: 2026-01-02T03:04:05+01:00\nfaults: \"latency=10ms\"\nhop_limit: 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ParseInstances("fuzz.json", data)
		if err != nil {
			return
		}
		for _, spec := range specs {
			doc, err := MarshalInstance(spec)
			if err != nil {
				t.Fatalf("MarshalInstance: %v", err)
			}
			again, err := ParseInstances("again.json", doc)
			if err != nil {
				t.Fatalf("ParseInstances(MarshalInstance(spec)) = %v\ndocument: %s", err, doc)
			}
			// An empty list and none mean the same for most keys (tags: {}
			// is no tags), and the document leaves both out; where they
			// differ (public_ipv4s), Derive fills in none. So compare the
			// derived instances, with empty and nil alike.
			opt := ec2.DeriveOptions{Seed: []byte("fuzz")}
			ec2.Derive(spec, opt)
			ec2.Derive(again[0], opt)
			if diff := cmp.Diff(spec, again[0], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-first +again):\n%s\ndocument: %s", diff, doc)
			}
		}
	})
}
