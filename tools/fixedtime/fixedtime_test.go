package fixedtime

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// marker is what a comment says of an instant that never reaches a real clock.
const marker = "fixed instant:"

// TestFixedInstantsAreMarked walks the module's test code (files ending in
// _test.go, and the test-support packages whose names end in "test") and
// fails on every unmarked call that builds an instant from literals.
func TestFixedInstantsAreMarked(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (n == "testdata" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || !(strings.HasSuffix(path, "_test.go") || strings.HasSuffix(filepath.Base(filepath.Dir(path)), "test")) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, line := range unmarked(fset, f, src) {
			found = append(found, rel+":"+line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("%s: a fixed instant without %q: derive it from time.Now() if it can reach a real clock (the AWS SDK, x509 or openssl, the kernel), else say why it cannot", f, marker)
	}
}

// TestUnmarked checks the rule itself on samples.
func TestUnmarked(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want int
	}{
		{"unmarked Date", "var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)", 1},
		{"marked on the line", "var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: a fake clock", 0},
		{"marked above", "// fixed instant: formatting only\nvar t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)", 0},
		{"marked in the declaration's doc", "// t0 starts the fake clock (fixed instant: golden files).\nvar (\n\tx = 1\n\tt0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)\n)", 0},
		{"relative", "var t0 = time.Now().Truncate(time.Second)", 0},
		{"Date of a variable year", "func f(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }", 0},
		{"Unix of a literal", "var t0 = time.Unix(1764000000, 0)", 1},
		{"Unix zero", "var t0 = time.Unix(0, 0)", 0},
		{"Parse of a literal", `func f() { time.Parse(time.RFC3339, "2026-11-22T10:00:00Z") }`, 1},
		{"Parse of a variable", `func f(s string) { time.Parse(time.RFC3339, s) }`, 0},
		{"two, one marked", "func f() {\n\t_ = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: pure\n\t_ = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)\n}", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			src := []byte("package x\n\nimport \"time\"\n\n" + tc.src + "\n")
			f, err := parser.ParseFile(fset, "x_test.go", src, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if got := unmarked(fset, f, src); len(got) != tc.want {
				t.Errorf("unmarked = %q, want %d", got, tc.want)
			}
		})
	}
}

// unmarked returns "line: call" for each instant built from literals in f
// (parsed from src) that no comment marks: one on the call's line, one
// alone on the line above, or the doc comment of its declaration.
func unmarked(fset *token.FileSet, f *ast.File, src []byte) []string {
	sameLine, lineAbove := map[int]bool{}, map[int]bool{}
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			if !strings.Contains(c.Text, marker) {
				continue
			}
			start, end := fset.Position(c.Pos()), fset.Position(c.End())
			sameLine[start.Line] = true
			if strings.TrimSpace(string(src[start.Offset-(start.Column-1):start.Offset])) == "" {
				lineAbove[end.Line+1] = true
			}
		}
	}
	var out []string
	for _, decl := range f.Decls {
		declMarked := false
		switch d := decl.(type) {
		case *ast.GenDecl:
			declMarked = d.Doc != nil && strings.Contains(d.Doc.Text(), marker)
		case *ast.FuncDecl:
			declMarked = d.Doc != nil && strings.Contains(d.Doc.Text(), marker)
		}
		ast.Inspect(decl, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || !fixedInstant(call) {
				return true
			}
			line := fset.Position(call.Pos()).Line
			if !declMarked && !sameLine[line] && !lineAbove[line] {
				text := string(src[fset.Position(call.Pos()).Offset:fset.Position(call.End()).Offset])
				out = append(out, strconv.Itoa(line)+": "+strings.SplitN(text, "\n", 2)[0])
			}
			return true
		})
	}
	return out
}

// fixedInstant reports whether call is time.Date with a literal year,
// time.Unix with a non-zero literal, or time.Parse(InLocation) of a literal.
func fixedInstant(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "time" {
		return false
	}
	lit := func(i int) *ast.BasicLit {
		if i >= len(call.Args) {
			return nil
		}
		l, _ := call.Args[i].(*ast.BasicLit)
		return l
	}
	switch sel.Sel.Name {
	case "Date":
		return lit(0) != nil
	case "Unix", "UnixMilli":
		l := lit(0)
		return l != nil && l.Value != "0"
	case "Parse", "ParseInLocation":
		return lit(1) != nil
	}
	return false
}

// moduleRoot is the directory holding go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
