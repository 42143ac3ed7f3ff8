// Package userdata renders an instance's user-data: the instance's own
// user-data, a per-instance template file or a default template, filled in
// with the instance's name, hostname, addresses, keys and tags.
//
// # Sources, in order
//
//  1. The instance's own user-data (ec2.Instance.UserData), served byte for
//     byte unless it is valid UTF-8 whose first line is exactly
//     "## template: imds" (trailing blanks and \r ignored): then it is a
//     template, and the marker line is removed from the output, so that the
//     second line ("#cloud-config", "#!/bin/sh", …) is what cloud-init sees
//     first. Binary, gzip and MIME multipart user-data are never touched.
//  2. The first existing file of <Dir>/<name>, <Dir>/<name>.yaml, <Dir>/<mac>,
//     <Dir>/<mac>.yaml, <Dir>/<mac-with-dashes>, <Dir>/<mac-with-dashes>.yaml,
//     where mac is the primary interface's MAC in lower case with colons
//     (02:00:0a:00:00:05) and the dash form (02-00-0a-00-00-05) exists for
//     file systems and tools that dislike colons in file names. A name that
//     is not a plain file name (empty, ".", "..", containing a slash or a
//     backslash) is not looked up. A file is a template when it is valid
//     UTF-8; binary files (not UTF-8, or starting with the gzip magic 1f 8b)
//     and MIME multipart messages are served byte for byte unless they start
//     with the marker line, which is removed as above.
//  3. Default, or BuiltinDefault when Default is "": always a template (a
//     leading marker line is removed too). Default "-" means no default:
//     Render returns nil, nil (user-data answers 404).
//
// Whatever is served must fit EC2's user-data limit of 16384 bytes
// (MaxSize); a larger result is an error.
//
// # Templates
//
// Templates use text/template with missingkey=error, and see:
//
//	.Name              the instance's name in imds
//	.InstanceID        i-0123456789abcdef0
//	.Hostname          .Name when it is a valid host name (as DHCP and DNS name the VM), else the local hostname's first label
//	.LocalHostname     the primary interface's local hostname (ip-10-0-0-5.ec2.internal)
//	.PrivateIP         the primary interface's first private IPv4 address, or ""
//	.MAC               the primary interface's MAC (lower case, colons)
//	.Region            us-east-1
//	.AvailabilityZone  us-east-1a
//	.PublicKeys        []string: the instance's keys, then the server's (Renderer.SSHKeys),
//	                   without duplicates (same key type and material)
//	.Tags              map[string]string of the instance's tags
//	.Data              the free-form data of the configuration (Renderer.Data)
//
// Because of missingkey=error, .Tags.Env fails when there is no Env tag;
// write {{index .Tags "Env" | default "dev"}} for an optional tag.
//
// Besides text/template's comparison and logic builtins, len, index and
// slice, the functions are:
//
//	indent N S     S with every non-empty line indented by N spaces (the first line too)
//	quote S        S as a YAML double-quoted scalar ("a \"b\"\n"), safe for any value
//	join SEP LIST  the elements of LIST separated by SEP ({{.PublicKeys | join ","}})
//	default D V    V, or D when V is empty (zero, "", nil or an empty list)
//	print, printf, println, html, js, urlquery: as in text/template, with size limits
//
// call is disabled, and no function reads files or the environment or runs
// commands: templates are user input and rendering must stay safe.
//
// # Bounded execution
//
// text/template has no timeout, so rendering is bounded by construction:
//
//   - A template's source is at most 64 KiB (MaxTemplateSize), and its output
//     at most MaxSize bytes: writing more stops execution at once.
//   - Every {{range}} is rewritten to count the iterations it is about to do
//     (the length of the list or map, or the integer of range-over-int) into
//     one budget per Render, and every {{template}}/{{block}} call counts one
//     step: past MaxSteps, execution stops with an error. Between two steps a
//     template executes at most its own (bounded) text, so the total work is
//     at most (MaxSteps+1) times the template's size. This catches
//     {{range 1000000000}}, nested loops and exponential recursion such as
//     a template calling itself twice on (slice . 1), which plain recursion
//     depth limits do not.
//   - Functions refuse to produce strings longer than MaxTemplateSize, so a
//     loop cannot double a variable into gigabytes (printf "%s%s" $x $x); fmt
//     itself caps widths and precisions at 10^6.
//   - Ranging over channels or functions is refused (the data holds none, but
//     the config's free-form data should not be able to block a request).
//
// Render also recovers from panics as a last resort and returns them as
// errors. A Renderer holds no mutable state: each Render parses its own
// template, so one failing template cannot affect the next render.
package userdata

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode"
	"unicode/utf8"

	"github.com/imdsdev/imds/internal/ec2"
)

// Limits of rendering.
const (
	// MaxSize is EC2's limit on user-data: the most Render returns.
	MaxSize = 16384
	// MaxTemplateSize bounds a template's source text and every string its
	// functions produce.
	MaxTemplateSize = 64 << 10
	// MaxSteps bounds the range iterations plus template calls of a render.
	MaxSteps = 10000
	// MaxFileSize is the largest file the default ReadFile reads.
	MaxFileSize = 1 << 20
)

// Marker is the first line that makes an instance's own user-data a template.
const Marker = "## template: imds"

// BuiltinDefault is the default template: a #cloud-config that sets the
// hostname and installs the SSH keys, nothing else. Without keys it leaves
// ssh_authorized_keys out rather than writing an empty list.
const BuiltinDefault = `#cloud-config
{{- if .Hostname}}
hostname: {{quote .Hostname}}
{{- end}}
{{- if .PublicKeys}}
ssh_authorized_keys:
{{- range .PublicKeys}}
  - {{quote .}}
{{- end}}
{{- end}}
`

// File names that Error reports for sources that are not files.
const (
	FileInstance = "user-data" // the instance's own user-data
	FileDefault  = "default"   // Renderer.Default
	FileBuiltin  = "builtin"   // BuiltinDefault
)

// Renderer renders an instance's user-data. Fields are set before use and
// not changed after; Render may then be called concurrently.
type Renderer struct {
	// Dir holds per-instance templates; "" disables the lookup.
	Dir string
	// Default is the default template text used when no file matches and the
	// instance has no user-data of its own; "" means BuiltinDefault and "-"
	// means no default user-data.
	Default string
	// SSHKeys are server-wide public keys added to every instance's keys.
	SSHKeys []string
	// Data is free-form template data from the config (available as .Data).
	// Templates only read it.
	Data map[string]any
	// ReadFile reads a file of Dir; nil means os.ReadFile limited to
	// MaxFileSize bytes. A missing file must give an error that is
	// fs.ErrNotExist; any other error fails the render.
	ReadFile func(path string) ([]byte, error)
}

// Error is a user-data source that could not be rendered or served.
type Error struct {
	File     string // a path of Dir, or FileInstance, FileDefault, FileBuiltin
	Line     int    // 1-based line of the source; 0 when unknown
	Instance string // the instance's name
	Err      error
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	return fmt.Sprintf("user-data template %s: %v (instance %s)", loc, e.Err, e.Instance)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTooLarge is the cause of an Error for user-data over MaxSize bytes.
var ErrTooLarge = fmt.Errorf("user-data is larger than EC2's limit of %d bytes", MaxSize)

// Render returns the user-data to serve for inst (see the package
// documentation for the sources and their order). It returns nil, nil when
// nothing applies and Default is "-". Errors are *Error.
func (r *Renderer) Render(inst *ec2.Instance) (out []byte, err error) {
	name := inst.Name
	file := ""
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, &Error{File: file, Instance: name, Err: fmt.Errorf("internal error: %v", p)}
		}
	}()

	if inst.UserData != nil {
		file = FileInstance
		if body, ok := markedTemplate(inst.UserData); ok {
			return r.execute(inst, file, body, 1)
		}
		return r.verbatim(inst, file, inst.UserData)
	}

	if r.Dir != "" {
		for _, p := range r.candidates(inst) {
			file = p
			b, err := r.readFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, &Error{File: p, Instance: name, Err: err}
			}
			if body, ok := markedTemplate(b); ok {
				return r.execute(inst, p, body, 1)
			}
			if !isText(b) {
				return r.verbatim(inst, p, b)
			}
			return r.execute(inst, p, string(b), 0)
		}
	}

	switch r.Default {
	case "-":
		return nil, nil
	case "":
		file = FileBuiltin
		return r.execute(inst, file, BuiltinDefault, 0)
	default:
		file = FileDefault
		if body, ok := markedTemplate([]byte(r.Default)); ok {
			return r.execute(inst, file, body, 1)
		}
		return r.execute(inst, file, r.Default, 0)
	}
}

// candidates lists the files of Dir to try for inst, in order.
func (r *Renderer) candidates(inst *ec2.Instance) []string {
	var names []string
	if plainName(inst.Name) {
		names = append(names, inst.Name, inst.Name+".yaml")
	}
	if mac := strings.ToLower(inst.Primary().MAC); plainName(mac) {
		names = append(names, mac, mac+".yaml")
		if dashed := strings.ReplaceAll(mac, ":", "-"); dashed != mac {
			names = append(names, dashed, dashed+".yaml")
		}
	}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(r.Dir, n)
	}
	return paths
}

// plainName reports whether s can be used as a single file name in Dir.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && filepath.IsLocal(s)
}

func (r *Renderer) readFile(path string) ([]byte, error) {
	if r.ReadFile != nil {
		return r.ReadFile(path)
	}
	return readFileLimited(path, MaxFileSize)
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// markedTemplate returns the text after the marker line when b is valid
// UTF-8 starting with it.
func markedTemplate(b []byte) (string, bool) {
	if !bytes.HasPrefix(b, []byte(Marker)) || !utf8.Valid(b) {
		return "", false
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	if strings.TrimRight(first, " \t\r") != Marker {
		return "", false
	}
	return rest, true
}

var reMIME = regexp.MustCompile(`(?i)^(content-type:\s*multipart/|mime-version:)`)

// isText reports whether a file of Dir is a template rather than data to
// serve byte for byte.
func isText(b []byte) bool {
	return utf8.Valid(b) && !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) && !reMIME.Match(b)
}

func (r *Renderer) verbatim(inst *ec2.Instance, file string, b []byte) ([]byte, error) {
	if len(b) > MaxSize {
		return nil, &Error{File: file, Instance: inst.Name, Err: ErrTooLarge}
	}
	return bytes.Clone(b), nil
}

// reLocation matches the location text/template puts in its errors; every
// tree of a Render has the parse name "imds".
var reLocation = regexp.MustCompile(`(?s)^template: imds:(\d+)(?::\d+)?: (.*)$`)

// reGuard matches what the guard functions add to an error message.
var reGuard = regexp.MustCompile(`executing "[^"]*" at <_imds(Range|Call)>: error calling _imds(Range|Call): `)

// located is a text/template error without its location, which Error shows.
type located struct {
	msg string
	err error
}

func (l *located) Error() string { return l.msg }
func (l *located) Unwrap() error { return l.err }

// execute renders text (whose line 1 is line 1+lineOffset of file).
func (r *Renderer) execute(inst *ec2.Instance, file, text string, lineOffset int) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		e := &Error{File: file, Instance: inst.Name, Err: err}
		if m := reLocation.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Line += lineOffset
			e.Err = &located{msg: reGuard.ReplaceAllString(m[2], ""), err: err}
		}
		return nil, e
	}
	if len(text) > MaxTemplateSize {
		return fail(fmt.Errorf("template is larger than %d bytes", MaxTemplateSize))
	}
	st := &state{}
	t, err := template.New("imds").Option("missingkey=error").Funcs(st.funcs()).Parse(text)
	if err != nil {
		return fail(err)
	}
	guard(t)
	w := &limitWriter{max: MaxSize}
	if err := t.Execute(w, r.data(inst)); err != nil {
		return fail(err)
	}
	if w.buf.Len() == 0 {
		return []byte{}, nil
	}
	return w.buf.Bytes(), nil
}

// hostLabel is a host name label (RFC 1123).
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Check reports a configuration that cannot work, such as a template
// directory that does not exist, instead of ignoring it at every render.
func (r *Renderer) Check() error {
	if r.Dir == "" {
		return nil
	}
	st, err := os.Stat(r.Dir)
	if err != nil {
		return fmt.Errorf("user_data_templates.dir %s: %w", r.Dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("user_data_templates.dir %s: not a directory", r.Dir)
	}
	return nil
}

// data is what templates see as dot.
func (r *Renderer) data(inst *ec2.Instance) map[string]any {
	p := inst.Primary()
	// The name when it can be one, so that the hostname a VM sets agrees
	// with its DHCP lease and DNS name (<name>.<vm_network.domain>).
	host := inst.Name
	if !hostLabel.MatchString(host) {
		host, _, _ = strings.Cut(p.LocalHostname, ".")
	}
	ip := ""
	if len(p.PrivateIPv4s) > 0 {
		ip = p.PrivateIPv4s[0]
	}
	keys := make([]string, 0, len(inst.PublicKeys)+len(r.SSHKeys))
	seen := map[string]bool{}
	add := func(k string) {
		k = strings.TrimSpace(k)
		if k == "" {
			return
		}
		id := strings.Join(first(strings.Fields(k), 2), " ") // type and key material, not the comment
		if !seen[id] {
			seen[id] = true
			keys = append(keys, k)
		}
	}
	for _, k := range inst.PublicKeys {
		add(k.Key)
	}
	for _, k := range r.SSHKeys {
		add(k)
	}
	tags := make(map[string]string, len(inst.Tags))
	for _, t := range inst.Tags {
		tags[t.Key] = t.Value
	}
	d := r.Data
	if d == nil {
		d = map[string]any{}
	}
	return map[string]any{
		"Name":             inst.Name,
		"InstanceID":       inst.ID,
		"Hostname":         host,
		"LocalHostname":    p.LocalHostname,
		"PrivateIP":        ip,
		"MAC":              strings.ToLower(p.MAC),
		"Region":           inst.Region,
		"AvailabilityZone": inst.AvailabilityZone,
		"PublicKeys":       keys,
		"Tags":             tags,
		"Data":             d,
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// limitWriter collects output and fails once it would exceed max bytes,
// which stops template execution.
type limitWriter struct {
	buf bytes.Buffer
	max int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.max {
		return 0, ErrTooLarge
	}
	return w.buf.Write(p)
}

// Names of the functions guard inserts into range and template pipelines.
const (
	fnRange = "_imdsRange"
	fnCall  = "_imdsCall"
)

// guard rewrites every tree of t so that each {{range}} passes its value
// through fnRange and each {{template}} its argument through fnCall, which
// count steps against MaxSteps.
func guard(t *template.Template) {
	done := map[*parse.Tree]bool{}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || done[tt.Tree] {
			continue
		}
		done[tt.Tree] = true
		guardNode(tt.Tree, tt.Tree.Root)
	}
}

func guardNode(tree *parse.Tree, n parse.Node) {
	cmd := func(fn string, pos parse.Pos) *parse.CommandNode {
		return &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos,
			Args: []parse.Node{parse.NewIdentifier(fn).SetTree(tree).SetPos(pos)}}
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			guardNode(tree, c)
		}
	case *parse.IfNode:
		guardNode(tree, n.List)
		guardNode(tree, n.ElseList)
	case *parse.WithNode:
		guardNode(tree, n.List)
		guardNode(tree, n.ElseList)
	case *parse.RangeNode:
		n.Pipe.Cmds = append(n.Pipe.Cmds, cmd(fnRange, n.Pipe.Pos))
		guardNode(tree, n.List)
		guardNode(tree, n.ElseList)
	case *parse.TemplateNode:
		if n.Pipe == nil {
			n.Pipe = &parse.PipeNode{NodeType: parse.NodePipe, Pos: n.Pos, Line: n.Line}
		}
		n.Pipe.Cmds = append(n.Pipe.Cmds, cmd(fnCall, n.Pos))
	}
}

// state is the step budget of one Render.
type state struct {
	steps int
}

// ErrSteps is the cause of an Error for a template that runs too long.
var ErrSteps = fmt.Errorf("template runs more than %d loop iterations and template calls", MaxSteps)

func (s *state) spend(n int64) error {
	if n < 0 {
		n = 0
	}
	if n > MaxSteps || int64(s.steps)+n > MaxSteps {
		s.steps = MaxSteps + 1
		return ErrSteps
	}
	s.steps += int(n)
	return nil
}

func (s *state) funcs() template.FuncMap {
	return template.FuncMap{
		fnRange: func(v any) (any, error) {
			rv := reflect.ValueOf(v)
			for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
				if rv.IsNil() {
					return v, nil
				}
				rv = rv.Elem()
			}
			var n int64
			switch rv.Kind() {
			case reflect.Array, reflect.Slice, reflect.Map:
				n = int64(rv.Len())
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				n = rv.Int()
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
				n = MaxSteps + 1
				if u := rv.Uint(); u <= MaxSteps {
					n = int64(u)
				}
			case reflect.Chan, reflect.Func:
				return nil, fmt.Errorf("cannot range over a %s in user-data templates", rv.Kind())
			}
			return v, s.spend(n)
		},
		fnCall: func(v ...any) (any, error) {
			if err := s.spend(1); err != nil {
				return nil, err
			}
			if len(v) == 0 {
				return nil, nil
			}
			return v[len(v)-1], nil
		},
		"indent":  indent,
		"quote":   quote,
		"join":    join,
		"default": dflt,
		"print":   func(a ...any) (string, error) { return sized(a, func() string { return fmt.Sprint(a...) }) },
		"println": func(a ...any) (string, error) { return sized(a, func() string { return fmt.Sprintln(a...) }) },
		"printf":  printf,
		"html":    func(a ...any) (string, error) { return sized(a, func() string { return template.HTMLEscaper(a...) }) },
		"js":      func(a ...any) (string, error) { return sized(a, func() string { return template.JSEscaper(a...) }) },
		"urlquery": func(a ...any) (string, error) {
			return sized(a, func() string { return template.URLQueryEscaper(a...) })
		},
		"call": func(...any) (any, error) {
			return nil, errors.New("call is not available in user-data templates")
		},
	}
}

var errString = fmt.Errorf("string longer than %d bytes", MaxTemplateSize)

// sized runs f unless the string arguments are already too long, and
// refuses a result longer than MaxTemplateSize.
func sized(args []any, f func() string) (string, error) {
	total := 0
	for _, a := range args {
		switch a := a.(type) {
		case string:
			total += len(a)
		case []byte:
			total += len(a)
		}
	}
	if total > MaxTemplateSize {
		return "", errString
	}
	s := f()
	if len(s) > MaxTemplateSize {
		return "", errString
	}
	return s, nil
}

func printf(format string, a ...any) (string, error) {
	if len(format) > MaxTemplateSize {
		return "", errString
	}
	return sized(a, func() string { return fmt.Sprintf(format, a...) })
}

// str turns a template value into a string.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case []byte:
		return string(v)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

func indent(n int, v any) (string, error) {
	if n < 0 || n > 1000 {
		return "", fmt.Errorf("indent %d: must be between 0 and 1000", n)
	}
	s := str(v)
	pad := strings.Repeat(" ", n)
	lines := strings.SplitAfter(s, "\n")
	if len(s)+len(lines)*n > MaxTemplateSize {
		return "", errString
	}
	var b strings.Builder
	for _, l := range lines {
		if l != "" && l != "\n" && l != "\r\n" {
			b.WriteString(pad)
		}
		b.WriteString(l)
	}
	return b.String(), nil
}

// quote returns v as a YAML double-quoted scalar. Invalid UTF-8 becomes
// U+FFFD, as a YAML document must be Unicode.
func quote(v any) (string, error) {
	s := str(v)
	if len(s) > MaxTemplateSize/4 {
		return "", errString
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case 0x85:
			b.WriteString(`\N`)
		case 0x2028:
			b.WriteString(`\L`)
		case 0x2029:
			b.WriteString(`\P`)
		default:
			switch {
			case c < 0x20 || c == 0x7f:
				fmt.Fprintf(&b, `\x%02x`, c)
			case c == 0xFEFF || (c >= 0x80 && !unicode.IsPrint(c) && c != utf8.RuneError):
				if c > 0xFFFF {
					fmt.Fprintf(&b, `\U%08x`, c)
				} else {
					fmt.Fprintf(&b, `\u%04x`, c)
				}
			default:
				b.WriteRune(c) // invalid UTF-8 decodes to, and is written as, U+FFFD
			}
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// join joins the elements of a list (a slice or array of anything) with sep.
func join(sep string, list any) (string, error) {
	rv := reflect.ValueOf(list)
	if !rv.IsValid() {
		return "", nil
	}
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
	case reflect.String:
		return rv.String(), nil
	default:
		return "", fmt.Errorf("join: cannot join a %s", rv.Type())
	}
	var b strings.Builder
	for i := range rv.Len() {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(str(rv.Index(i).Interface()))
		if b.Len() > MaxTemplateSize {
			return "", errString
		}
	}
	return b.String(), nil
}

// dflt returns v, or d when v is empty.
func dflt(d, v any) any {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.IsZero() {
		return d
	}
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.Array, reflect.String:
		if rv.Len() == 0 {
			return d
		}
	}
	return v
}
