package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/suggest"
)

// The work of walking one document (a step is a key or a list item) is
// bounded by minSteps plus stepsPerNode for each node written in it:
// aliases let a few kilobytes describe a huge tree, and bounding the walk by
// the document's own size (as yaml.v3 bounds alias expansion by a ratio)
// refuses such alias bombs without limiting honest size. A document without
// aliases takes at most 2 steps per node; one whose every entry merges a
// shared block of defaults (<<: *defaults) takes more, about 11 per node for
// a block of 48 tags (TestMergedDefaults), hence the margin. The price of
// the margin: a 1 MiB document of aliases can keep the decoder busy about
// 9 times as long as an honest 1 MiB document (4.3 s against 0.5 s here)
// before it is refused.
const (
	minSteps     = 1 << 17
	stepsPerNode = 16
)

// readFunc reads the file at path, failing if it is larger than limit bytes.
// Parse reads from disk; the fuzz test substitutes a fake so that fuzzed
// paths never touch the file system.
type readFunc func(path string, limit int64) ([]byte, error)

// decoder walks a yaml.Node tree against the schema, collecting every problem
// instead of stopping at the first: one run shows the user all of them.
type decoder struct {
	file    string
	baseDir string
	read    readFunc
	errs    []*Error
	// lines maps the dotted path of every key and list item seen to its
	// line, so that problems found later (by ec2.Validate) point into the file.
	lines map[string]int
	// steps is the work spent so far, maxSteps what the document may spend.
	steps, maxSteps int
	// merged memoizes the flattened entries of each mapping, so that a mapping
	// merged or aliased many times is flattened (and its problems reported) once.
	merged  map[*yaml.Node][]entry
	merging map[*yaml.Node]bool
	// covered holds paths whose problem is already reported in another
	// form, so that validating the instance does not report it again.
	covered map[string]bool
	// misplaced names, for unknown top-level keys, the section they belong in.
	misplaced map[string]string
	// offered, when set, is told the keys each decoded mapping accepts (the
	// test that keeps docs/configuration.md complete uses it).
	offered func(path string, keys []string)
	// fields memoizes the fields of each document type (walk.go).
	fields map[reflect.Type]*structInfo
	// defaultDoc is the document of ec2.NewDefaultInstance(), which every
	// instance document is decoded over.
	defaultDoc *InstanceDoc
}

func newDecoder(file, baseDir string, read readFunc) *decoder {
	return &decoder{
		file:     file,
		baseDir:  baseDir,
		read:     read,
		maxSteps: minSteps,
		lines:    map[string]int{},
		merged:   map[*yaml.Node][]entry{},
		merging:  map[*yaml.Node]bool{},
		covered:  map[string]bool{},
	}
}

// entry is one key of a mapping after merges are applied.
type entry struct {
	name  string
	line  int        // where the key is written
	value *yaml.Node // as written: possibly an alias
}

// field decodes the value of one key; path is its dotted path and line the
// line of the key, where problems with the value are reported.
type field func(path string, line int, v *yaml.Node)

// schema maps the keys a mapping may have to their decoders.
type schema map[string]field

func (d *decoder) errorf(line int, path, format string, args ...any) {
	if line < 1 {
		line = 1
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: path, Problem: fmt.Sprintf(format, args...)})
	d.covered[path] = true
}

// isCovered reports whether a problem with path, or with a key enclosing
// it, was already reported: a value that could not be decoded is not
// validated again.
func (d *decoder) isCovered(path string) bool {
	for p := path; ; {
		if d.covered[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// step spends one unit of the work budget; false once it is spent, which is
// reported once.
func (d *decoder) step(line int) bool {
	d.steps++
	if d.steps == d.maxSteps+1 {
		d.errorf(line, "", "document is too large or uses too many aliases")
	}
	return d.steps <= d.maxSteps
}

// exhausted reports whether the document was too big to walk completely.
func (d *decoder) exhausted() bool { return d.steps > d.maxSteps }

// countNodes returns the number of nodes written in the tree under n,
// counting an alias as one node (not following it).
func countNodes(n *yaml.Node) int {
	count := 0
	stack := []*yaml.Node{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		count++
		if n.Kind != yaml.AliasNode {
			stack = append(stack, n.Content...)
		}
	}
	return count
}

// mark remembers the first line where path is written.
func (d *decoder) mark(path string, line int) {
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = line
	}
}

// document parses data into the root node of its only document; nil when the
// file is empty or cannot be parsed.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 panics on inputs it considers internal errors; a typo in a
		// config file must be reported, never crash the server.
		if r := recover(); r != nil {
			d.errorf(1, "", "invalid YAML: %s", oneLine(fmt.Sprint(r)))
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err, data)
	default:
		// Silently ignoring later documents would ignore settings the user
		// believes are in effect.
		d.errorf(extra.Line, "", "only one YAML document is allowed, found a second one")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	d.maxSteps = minSteps + stepsPerNode*countNodes(&doc)
	return doc.Content[0]
}

var (
	reYAMLLine      = regexp.MustCompile(`^line (\d+): (.*)$`)
	reUnknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// syntaxError turns a yaml error ("yaml: line 3: did not find expected key")
// into an *Error with that line.
func (d *decoder) syntaxError(err error, data []byte) {
	msg := oneLine(strings.TrimPrefix(err.Error(), "yaml: "))
	line := 0
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if m := reUnknownAnchor.FindStringSubmatch(msg); m != nil {
		line = aliasLine(data, m[1])
	} else if strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters") || strings.Contains(msg, "Unicode") {
		// The reader reports encoding problems without a position.
		line = badCharLine(data)
	}
	d.errorf(line, "", "invalid YAML: %s", msg)
}

// aliasLine returns the line of the first alias *name in data, or 1: the
// parser reports an unknown anchor without a position.
func aliasLine(data []byte, name string) int {
	alias := []byte("*" + name)
	for off := 0; ; {
		i := bytes.Index(data[off:], alias)
		if i < 0 {
			return 1
		}
		end := off + i + len(alias)
		if end == len(data) || bytes.IndexByte([]byte(" \t\r\n,[]{}"), data[end]) >= 0 {
			return 1 + bytes.Count(data[:off+i], []byte("\n"))
		}
		off = end
	}
}

// badCharLine returns the line of the first character YAML does not allow,
// or 1.
func badCharLine(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r >= 0x7f && r <= 0x9f && r != 0x85,
			r == 0xfffe || r == 0xffff:
			return line
		case r == '\n':
			line++
		}
		data = data[size:]
	}
	return 1
}

// oneLine keeps each problem on its own line of output.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// resolve follows an alias to its anchored node. A nil or dangling node
// (impossible from the parser) becomes null rather than a crash.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// isText reports whether n is a scalar that has a textual meaning: YAML
// resolves `account_id: 123456789012` or `cost-center: 4711` to numbers, but
// the user means the text as written.
func isText(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	}
	return false
}

// describe names what a node is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
	default:
		return "an unsupported node"
	}
	v := n.Value
	if len(v) > 60 {
		v = v[:60] + "…"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "null"
	case "!!str":
		return "the string " + strconv.Quote(v)
	case "!!binary":
		return "binary data"
	case "!!int", "!!float", "!!bool", "!!timestamp":
		if q := strconv.Quote(v); q == `"`+v+`"` && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			return v
		}
		return strconv.Quote(v)
	default:
		return "a value tagged " + strconv.Quote(tag)
	}
}

// simpleKey reports whether key is made of [A-Za-z0-9_-] only.
func simpleKey(key string) bool {
	for i := range len(key) {
		switch c := key[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return key != ""
}

// join appends key to path, quoting keys that would make the path ambiguous
// or span lines.
func join(path, key string) string {
	if !simpleKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// entries lists the keys of mapping m in file order, including the keys of
// merged mappings (<<) that m does not set itself, and reports duplicate and
// non-text keys. An explicit key overrides a merged one; among merged
// mappings the first wins, as the YAML merge key specification says.
func (d *decoder) entries(m *yaml.Node, path string) []entry {
	// Only an anchored mapping can be reached twice (or merged into
	// itself): the others are neither remembered nor tracked.
	anchored := m.Anchor != ""
	if es, ok := d.merged[m]; ok {
		return es
	}
	if d.merging[m] {
		d.errorf(m.Line, mergePath(path), "merges a mapping into itself")
		return nil
	}
	if anchored {
		d.merging[m] = true
		defer delete(d.merging, m)
	}

	explicit := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if !d.step(k.Line) {
			break
		}
		rk := resolve(k)
		switch {
		case isMerge(rk):
		case !isText(rk) && !isNull(rk):
			d.errorf(k.Line, path, "keys must be text, got %s", describe(rk))
		default:
			if first, dup := explicit[rk.Value]; dup {
				d.errorf(k.Line, join(path, rk.Value), "duplicate key (first at line %d)", first)
			} else {
				explicit[rk.Value] = k.Line
			}
		}
	}

	var out []entry
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		rk := resolve(k)
		if isMerge(rk) {
			for _, src := range d.mergeSources(path, k.Line, v) {
				for _, e := range d.entries(src, path) {
					if _, ok := explicit[e.name]; ok || seen[e.name] {
						continue
					}
					seen[e.name] = true
					out = append(out, e)
				}
			}
			continue
		}
		if _, ok := explicit[rk.Value]; !ok || seen[rk.Value] || !(isText(rk) || isNull(rk)) {
			continue
		}
		seen[rk.Value] = true
		out = append(out, entry{name: rk.Value, line: k.Line, value: v})
	}
	if anchored {
		d.merged[m] = out
	}
	return out
}

// mergeSources returns the mappings a merge key's value names.
func (d *decoder) mergeSources(path string, line int, v *yaml.Node) []*yaml.Node {
	rv := resolve(v)
	switch rv.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{rv}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, it := range rv.Content {
			if ri := resolve(it); ri.Kind == yaml.MappingNode {
				out = append(out, ri)
			} else {
				d.errorf(it.Line, mergePath(path), "can only merge mappings, got %s", describe(ri))
			}
		}
		return out
	}
	d.errorf(line, mergePath(path), "can only merge a mapping or a list of mappings, got %s", describe(rv))
	return nil
}

// mergePath names the merge key of the mapping at path.
func mergePath(path string) string {
	if path == "" {
		return "<<"
	}
	return path + ".<<"
}

// mapping decodes the mapping v against s, reporting unknown keys. It returns
// false if v is null, which stands for an absent section.
func (d *decoder) mapping(path string, line int, v *yaml.Node, s schema) bool {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return d.walkMapping(path, line, v, keys, func(e entry, p string) bool {
		dec, ok := s[e.name]
		if ok {
			dec(p, e.line, e.value)
		}
		return ok
	})
}

// mappingEntries returns the entries of the mapping v; false if v is null
// or, reported as not being what, something else.
func (d *decoder) mappingEntries(path string, line int, v *yaml.Node, what string) ([]entry, bool) {
	rv := resolve(v)
	if isNull(rv) {
		return nil, false
	}
	if rv.Kind != yaml.MappingNode {
		d.errorf(line, path, "must be %s, got %s", what, describe(rv))
		return nil, false
	}
	return d.entries(rv, path), true
}

// walkMapping calls each for the entries of the mapping v, whose keys may
// be those of the sorted list keys; each returns false for a key it does
// not know, which is reported. It returns false if v is null.
func (d *decoder) walkMapping(path string, line int, v *yaml.Node, keys []string, each func(e entry, path string) bool) bool {
	es, ok := d.mappingEntries(path, line, v, "a mapping")
	if !ok {
		return false
	}
	if d.offered != nil {
		d.offered(path, keys)
	}
	for _, e := range es {
		p := join(path, e.name)
		if !d.step(e.line) {
			break
		}
		d.mark(p, e.line)
		if !each(e, p) {
			d.errorf(e.line, p, "unknown key%s", d.hint(path, e.name, keys))
		}
	}
	return true
}

// hint suggests which of the sorted keys an unknown key was meant to be.
func (d *decoder) hint(path, name string, keys []string) string {
	if section, ok := d.misplaced[name]; ok && path == "" {
		return fmt.Sprintf("; %s belongs under %s:", name, section)
	}
	if len(name) > 64 {
		return ""
	}
	// camelCase and kebab-case are the usual slips in a snake_case file.
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		if r == '-' {
			r = '_'
		}
		b.WriteRune(r)
	}
	norm := b.String()
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := suggest.Distance(norm, k); dist < bestDist && dist <= len(k)/3 {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

// list decodes each item of the list v. It returns false if v is null.
func (d *decoder) list(path string, line int, v *yaml.Node, each func(i int, path string, line int, item *yaml.Node)) bool {
	rv := resolve(v)
	if isNull(rv) {
		return false
	}
	if rv.Kind != yaml.SequenceNode {
		d.errorf(line, path, "must be a list, got %s", describe(rv))
		return false
	}
	for i, it := range rv.Content {
		if !d.step(it.Line) {
			break
		}
		p := path + "[" + strconv.Itoa(i) + "]"
		d.mark(p, it.Line)
		each(i, p, it.Line, it)
	}
	return true
}

// str decodes a text value; ok is false if v is null (absent) or invalid
// (reported).
func (d *decoder) str(path string, line int, v *yaml.Node) (s string, ok bool) {
	rv := resolve(v)
	if isNull(rv) {
		return "", false
	}
	if !isText(rv) {
		d.errorf(line, path, "must be a string, got %s", describe(rv))
		return "", false
	}
	return rv.Value, true
}

// strs decodes a list of text values. The result of an empty list is
// non-nil, because for some lists (public_ipv4s) empty differs from absent.
func (d *decoder) strs(path string, line int, v *yaml.Node) ([]string, bool) {
	out := []string{}
	valid := true
	present := d.list(path, line, v, func(_ int, p string, l int, it *yaml.Node) {
		s, ok := d.str(p, l, it)
		if !ok {
			if isNull(resolve(it)) {
				d.errorf(l, p, "must be a string, got null")
			}
			valid = false
			return
		}
		out = append(out, s)
	})
	return out, present && valid
}

// integer decodes an integer in [lo, hi].
func (d *decoder) integer(path string, line int, v *yaml.Node, lo, hi int) (int, bool) {
	rv := resolve(v)
	if isNull(rv) {
		return 0, false
	}
	var n int64
	if rv.Kind != yaml.ScalarNode || rv.ShortTag() != "!!int" || rv.Decode(&n) != nil {
		d.errorf(line, path, "must be an integer, got %s", describe(rv))
		return 0, false
	}
	if n < int64(lo) || n > int64(hi) {
		if hi == math.MaxInt32 {
			d.errorf(line, path, "must be %d or more, got %d", lo, n)
		} else {
			d.errorf(line, path, "must be between %d and %d, got %d", lo, hi, n)
		}
		return 0, false
	}
	return int(n), true
}

// boolean decodes true or false. YAML 1.1's yes/no/on/off are refused: they
// are strings in YAML 1.2 and a frequent source of surprises.
func (d *decoder) boolean(path string, line int, v *yaml.Node) (bool, bool) {
	rv := resolve(v)
	if isNull(rv) {
		return false, false
	}
	var b bool
	if rv.Kind != yaml.ScalarNode || rv.ShortTag() != "!!bool" || rv.Decode(&b) != nil {
		d.errorf(line, path, "must be true or false, got %s", describe(rv))
		return false, false
	}
	return b, true
}

// enum decodes one of the allowed words.
func (d *decoder) enum(path string, line int, v *yaml.Node, allowed ...string) (string, bool) {
	s, ok := d.str(path, line, v)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.errorf(line, path, "must be %s, got %q", orList(allowed), s)
		return "", false
	}
	return s, true
}

// orList spells a list of choices as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// duration decodes a Go duration in [lo, hi].
func (d *decoder) duration(path string, line int, v *yaml.Node, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := d.str(path, line, v)
	if !ok {
		return 0, false
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(line, path, "must be a duration like 90m or 6h, got %q", s)
		return 0, false
	}
	if dur < lo || dur > hi {
		d.errorf(line, path, "must be between %s and %s, got %s", fmtDuration(lo), fmtDuration(hi), fmtDuration(dur))
		return 0, false
	}
	return dur, true
}

// fmtDuration writes 6h and 5h45m rather than 6h0m0s and 5h45m0s.
func fmtDuration(dur time.Duration) string {
	s := dur.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// binary decodes a !!binary scalar, which YAML lets span lines.
func binary(n *yaml.Node) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
}

// readError names the file and says why it could not be read.
func readError(path string, err error) string {
	return fmt.Sprintf("cannot read %s: %s", path, errorCause(err))
}

// errorCause drops Go's "open PATH:" prefix, which would repeat the path.
func errorCause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return oneLine(err.Error())
}

// into returns a field decoder that stores a text value in dst.
func (d *decoder) into(dst *string) field {
	return func(p string, line int, v *yaml.Node) {
		if s, ok := d.str(p, line, v); ok {
			*dst = s
		}
	}
}
