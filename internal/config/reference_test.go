package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// referenceDoc is the configuration reference this test keeps in step with
// the decoder.
const referenceDoc = "../../docs/configuration.md"

// completeMarker starts the one example of the reference that uses every
// key; its relative paths resolve against testdata/.
const completeMarker = "# imds.yaml: the complete example"

// notInExample are offered keys the complete example cannot hold, with the
// reason. instance: cannot be combined with instances:, and takes exactly
// the keys of an item of instances, which the example covers.
var notInExample = map[string]string{
	"instance":   "cannot be combined with instances:; same keys as instances[]",
	"store.bolt": "cannot be combined with store.etcd; takes no keys",
}

// TestReference fails when docs/configuration.md and the decoder disagree:
// a key the decoder accepts that the tables do not document, a documented
// key the decoder does not accept, or an accepted key the complete example
// leaves out (so that every nested section is decoded, and its keys
// offered, too). Paths are normalised as the reference's "How keys are
// written" says: list indexes become [], instance: becomes instances[], and
// role names become NAME.
func TestReference(t *testing.T) {
	doc, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedKeys(t, string(doc))
	example := completeExample(t, string(doc))

	// The example is valid as a whole, as a user would load it.
	f, err := Parse("configuration.md", []byte(example), "testdata")
	if err != nil {
		t.Fatalf("the complete example does not parse: %v", err)
	}
	if _, err := f.BuildInstances(ec2.DeriveOptions{Seed: []byte("docs")}); err != nil {
		t.Fatalf("the complete example does not build: %v", err)
	}

	offered := map[string]bool{}
	d := newDecoder("configuration.md", "testdata", readLimited)
	d.offered = func(path string, keys []string) {
		for _, k := range keys {
			offered[normaliseKey(sub(path, k))] = true
		}
	}
	root := d.document([]byte(example))
	d.top(root, Default())
	if len(d.errs) > 0 {
		t.Fatalf("decoding the complete example: %v", joinErrors(d.errs))
	}
	present := map[string]bool{}
	presentKeys(root, "", present)

	for _, k := range sortedKeys(offered) {
		if !documented[k] {
			t.Errorf("%s: the decoder accepts %s, but no table of the reference documents it", referenceDoc, k)
		}
		if _, exempt := notInExample[k]; !present[k] && !exempt {
			t.Errorf("%s: the complete example does not set %s", referenceDoc, k)
		}
	}
	for _, k := range sortedKeys(documented) {
		if !offered[k] {
			t.Errorf("%s: documents %s, which the decoder does not accept (or the complete example does not reach)", referenceDoc, k)
		}
	}
	if len(offered) < 100 {
		t.Errorf("the decoder offered only %d keys; is the hook still called?", len(offered))
	}
}

var (
	reListIndex = regexp.MustCompile(`\[\d+\]`)
	reKeyRow    = regexp.MustCompile("^\\| `([^`]+)` \\|")
)

// normaliseKey writes a decoder path the way the reference's tables do.
func normaliseKey(p string) string {
	p = reListIndex.ReplaceAllString(p, "[]")
	switch {
	case p == "instance":
	case strings.HasPrefix(p, "instance."):
		p = "instances[]" + strings.TrimPrefix(p, "instance")
	}
	if rest, ok := strings.CutPrefix(p, "roles."); ok {
		// Role names may hold dots, but no key of a role does.
		if i := strings.LastIndexByte(rest, '.'); i >= 0 {
			p = "roles.NAME" + rest[i:]
		} else {
			p = "roles.NAME"
		}
	}
	return p
}

// documentedKeys returns the first cells of the rows of every table whose
// header starts with "| key |".
func documentedKeys(t *testing.T, doc string) map[string]bool {
	keys := map[string]bool{}
	inTable := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "| key |"):
			inTable = true
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case inTable:
			if m := reKeyRow.FindStringSubmatch(line); m != nil {
				if keys[m[1]] {
					t.Errorf("%s: %s is documented twice", referenceDoc, m[1])
				}
				keys[m[1]] = true
			}
		}
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no key tables found", referenceDoc)
	}
	return keys
}

// completeExample returns the yaml block that starts with completeMarker.
func completeExample(t *testing.T, doc string) string {
	for _, m := range regexp.MustCompile("(?ms)^```yaml\\n(.*?)^```").FindAllStringSubmatch(doc, -1) {
		if strings.HasPrefix(m[1], completeMarker) {
			return m[1]
		}
	}
	t.Fatalf("%s: no yaml block starts with %q", referenceDoc, completeMarker)
	return ""
}

// presentKeys records the normalised path of every key written in the
// mappings under n. Keys of free-form mappings (tags, block devices,
// template data) are recorded too, but nothing asks for them.
func presentKeys(n *yaml.Node, path string, out map[string]bool) {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := sub(path, n.Content[i].Value)
			out[normaliseKey(p)] = true
			presentKeys(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			presentKeys(it, path+"[0]", out)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
