// Package imdsroot holds the repository-wide hygiene tests: package docs,
// the imports of the domain package and package-level state.
package imdsroot

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// pkg is one directory of Go code, without its tests.
type pkg struct {
	dir   string
	files map[string]*ast.File
}

// packages parses the non-test Go files of the module, by directory.
func packages(t *testing.T) []pkg {
	t.Helper()
	fset := token.NewFileSet()
	byDir := map[string]map[string]*ast.File{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (name == "testdata" || strings.HasPrefix(name, ".") || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if byDir[dir] == nil {
			byDir[dir] = map[string]*ast.File{}
		}
		byDir[dir][path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []pkg
	for dir, files := range byDir {
		out = append(out, pkg{dir: filepath.ToSlash(dir), files: files})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	if len(out) < 10 {
		t.Fatalf("found %d packages; run the test from the module root", len(out))
	}
	return out
}

// TestPackageDocs: every package has exactly one package doc comment, so
// that go doc shows one and no file's comment silently replaces another's.
func TestPackageDocs(t *testing.T) {
	for _, p := range packages(t) {
		var with []string
		for path, f := range p.files {
			if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
				with = append(with, path)
			}
		}
		sort.Strings(with)
		switch len(with) {
		case 1:
		case 0:
			t.Errorf("%s: no package doc comment (add one to doc.go or the main file)", p.dir)
		default:
			t.Errorf("%s: %d package doc comments, want one: %s", p.dir, len(with), strings.Join(with, ", "))
		}
	}
}

// TestDomainImports keeps internal/ec2 the domain: the standard library
// only, and nothing of a transport or a store.
func TestDomainImports(t *testing.T) {
	forbidden := []string{"net/http", "database/", "os/exec", "net/rpc", "net/smtp"}
	found := false
	for _, p := range packages(t) {
		if p.dir != "internal/ec2" {
			continue
		}
		found = true
		for path, f := range p.files {
			for _, imp := range f.Imports {
				ip, _ := strconv.Unquote(imp.Path.Value)
				if first, _, _ := strings.Cut(ip, "/"); strings.Contains(first, ".") {
					t.Errorf("%s imports %s: internal/ec2 imports only the standard library", path, ip)
				}
				for _, bad := range forbidden {
					if ip == strings.TrimSuffix(bad, "/") || strings.HasPrefix(ip, bad) || strings.HasPrefix(ip, bad+"/") {
						t.Errorf("%s imports %s: internal/ec2 knows no transport or storage", path, ip)
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("internal/ec2 not found")
	}
}

// allowedVars are the package-level variables that are mutable in type but
// never written after start-up, each with why it may stay.
var allowedVars = map[string]string{
	"cmd/imds.flagNames":                        "read-only list of flags",
	"cmd/imds.logHeader":                        "read-only table header",
	"internal/admin.jsonBody":                   "read-only media types",
	"internal/admin.documentBody":               "read-only media types",
	"internal/admin.codes":                      "read-only error table, the one per surface",
	"internal/admin.updateJSON":                 "read-only decoder settings",
	"internal/ec2.EventFields":                  "read-only vocabulary",
	"internal/ec2.eventFieldOrder":              "read-only vocabulary",
	"internal/admin.faultFields":                "read-only decoder settings",
	"internal/config.roleKeys":                  "read-only schema keys",
	"internal/ec2.EventTypes":                   "read-only vocabulary",
	"internal/ec2.SpotActions":                  "read-only vocabulary",
	"internal/ec2.MaintenanceCodes":             "read-only vocabulary",
	"internal/ec2.AutoscalingStates":            "read-only vocabulary",
	"internal/fastlog.bufPool":                  "a sync.Pool holds no state callers can see",
	"internal/dashboard.staticFiles":            "embedded files, read-only",
	"internal/imds.DefaultVersions":             "read-only list of API versions",
	"internal/imds.smallLengths":                "read-only precomputed header values",
	"internal/imds.textPlain":                   "read-only header value, shared to avoid allocation",
	"internal/imds.textHTML":                    "read-only header value, shared to avoid allocation",
	"internal/imds.octetStream":                 "read-only header value, shared to avoid allocation",
	"internal/imds.serverName":                  "read-only header value, shared to avoid allocation",
	"internal/imds.rangesNone":                  "read-only header value, shared to avoid allocation",
	"internal/imds.statusOf":                    "read-only error table, the one per surface",
	"internal/netsetup.chainSpecs":              "read-only nftables layout",
	"internal/registry.maintenanceDescriptions": "read-only texts",
	"internal/store/storetest.NotStored":        "read-only list of fields the store may drop",
}

// TestNoPackageState fails on a package-level variable that could hold
// state: every map, counter and tunable belongs to a struct that owns it.
// Sentinel errors, compiled regular expressions, interface assertions
// (var _ I = T{}) and constants written as variables of immutable types
// (strings, numbers, booleans) are fine.
func TestNoPackageState(t *testing.T) {
	for _, p := range packages(t) {
		for path, f := range p.files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if name.Name == "_" {
							continue
						}
						var value ast.Expr
						if i < len(vs.Values) {
							value = vs.Values[i]
						}
						key := p.dir + "." + name.Name
						if _, ok := allowedVars[key]; ok || harmlessVar(name.Name, vs.Type, value) {
							continue
						}
						t.Errorf("%s: package-level variable %s may hold state; give it an owner struct, make it a const, or allow it in allowedVars with a reason", path, name.Name)
					}
				}
			}
		}
	}
}

// harmlessVar reports whether a package-level variable is of a kind that
// holds no state: a sentinel error, a compiled regexp, or a string, number
// or boolean literal.
func harmlessVar(name string, typ, value ast.Expr) bool {
	if call, ok := value.(*ast.CallExpr); ok {
		switch callee(call) {
		case "errors.New", "fmt.Errorf":
			return strings.HasPrefix(name, "Err") || strings.HasPrefix(name, "err")
		case "regexp.MustCompile", "netip.MustParseAddr", "netip.MustParsePrefix":
			return true // immutable values
		}
	}
	if id, ok := typ.(*ast.Ident); ok {
		switch id.Name {
		case "string", "bool", "int", "int64", "float64":
			// Set at link time (-X main.version=...) or never written.
			return true
		}
	}
	if lit, ok := value.(*ast.BasicLit); ok && typ == nil {
		return lit.Kind == token.STRING || lit.Kind == token.INT || lit.Kind == token.FLOAT
	}
	return false
}

func callee(call *ast.CallExpr) string {
	if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
		if x, ok := sel.X.(*ast.Ident); ok {
			return x.Name + "." + sel.Sel.Name
		}
	}
	return ""
}

// TestHarmlessVar checks the rule itself on a few declarations.
func TestHarmlessVar(t *testing.T) {
	tests := []struct {
		decl string
		want bool
	}{
		{`var ErrGone = errors.New("gone")`, true},
		{`var re = regexp.MustCompile("a+")`, true},
		{`var version = "dev"`, true},
		{`var limit int`, true},
		{`var cache = map[string]int{}`, false},
		{`var mu sync.Mutex`, false},
		{`var seq atomic.Uint64`, false},
		{`var now = time.Now`, false},
		{`var notAnError = errors.New("x")`, false},
	}
	for _, tt := range tests {
		f, err := parser.ParseFile(token.NewFileSet(), "x.go", "package x\n"+tt.decl, 0)
		if err != nil {
			t.Fatal(err)
		}
		vs := f.Decls[0].(*ast.GenDecl).Specs[0].(*ast.ValueSpec)
		var value ast.Expr
		if len(vs.Values) > 0 {
			value = vs.Values[0]
		}
		if got := harmlessVar(vs.Names[0].Name, vs.Type, value); got != tt.want {
			t.Errorf("%s: harmless=%v, want %v", tt.decl, got, tt.want)
		}
	}
}
