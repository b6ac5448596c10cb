package reactor_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The forms in which docs/tour.md names code (see its "How to read this"):
//
//   - a step's link, [`file.go` `Name`](../file.go) or
//     [`file.go` `Type.Method`](../file.go): the file must exist, the link
//     must point at it, and the file must declare the function, method or
//     type;
//   - a file in a code span, `file.go` or `dir/file.go`: it must exist;
//   - a relative link, (../path): the path must exist;
//   - a code span `Type.Member` or `reactor.Name` whose type or package is
//     the root package's: the member (method or field) or the name must be
//     declared there.
var (
	tourStepRef  = regexp.MustCompile("\\[`([\\w./-]+\\.go)` `([\\w.]+)`\\]\\(([^)]*)\\)")
	tourFileSpan = regexp.MustCompile("`([\\w./-]+\\.go)`")
	tourRelLink  = regexp.MustCompile(`\]\((\.\./[^)#\s]*)`)
	tourSelector = regexp.MustCompile("`(reactor\\.)?([A-Za-z_]\\w*)\\.([A-Za-z_]\\w*)(?:\\(\\))?`")
)

// goDecls is what the Go files of one directory declare.
type goDecls struct {
	byFile  map[string]map[string]bool // file name -> "Name" and "Type.Method"
	members map[string]map[string]bool // type -> methods and fields
	top     map[string]bool            // top-level functions, types, vars, consts
}

// parseDecls parses the non-test Go files of dir.
func parseDecls(dir string) (*goDecls, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	d := &goDecls{byFile: map[string]map[string]bool{}, members: map[string]map[string]bool{}, top: map[string]bool{}}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		names := map[string]bool{}
		d.byFile[filepath.Base(path)] = names
		for _, decl := range f.Decls {
			d.addDecl(names, decl)
		}
	}
	return d, nil
}

func (d *goDecls) member(typ, name string) {
	if d.members[typ] == nil {
		d.members[typ] = map[string]bool{}
	}
	d.members[typ][name] = true
}

func (d *goDecls) addDecl(names map[string]bool, decl ast.Decl) {
	switch decl := decl.(type) {
	case *ast.FuncDecl:
		if decl.Recv == nil || len(decl.Recv.List) == 0 {
			names[decl.Name.Name] = true
			d.top[decl.Name.Name] = true
			return
		}
		recv := receiverType(decl.Recv.List[0].Type)
		names[recv+"."+decl.Name.Name] = true
		d.member(recv, decl.Name.Name)
	case *ast.GenDecl:
		for _, spec := range decl.Specs {
			switch spec := spec.(type) {
			case *ast.TypeSpec:
				names[spec.Name.Name] = true
				d.top[spec.Name.Name] = true
				if st, ok := spec.Type.(*ast.StructType); ok {
					for _, field := range st.Fields.List {
						for _, n := range field.Names {
							d.member(spec.Name.Name, n.Name)
						}
						if len(field.Names) == 0 { // embedded: named by its type
							d.member(spec.Name.Name, receiverType(field.Type))
						}
					}
				}
			case *ast.ValueSpec:
				for _, n := range spec.Names {
					names[n.Name] = true
					d.top[n.Name] = true
				}
			}
		}
	}
}

// receiverType returns the name of a receiver's (or embedded field's)
// type: T for T, *T, T[P] and pkg.T.
func receiverType(e ast.Expr) string {
	for {
		switch t := e.(type) {
		case *ast.StarExpr:
			e = t.X
		case *ast.IndexExpr:
			e = t.X
		case *ast.IndexListExpr:
			e = t.X
		case *ast.SelectorExpr:
			return t.Sel.Name
		case *ast.Ident:
			return t.Name
		default:
			return fmt.Sprintf("%T", e)
		}
	}
}

// tourProblems returns what in doc names code that the tree (rooted at
// root) does not have, one line each.
func tourProblems(doc, root string) ([]string, error) {
	var problems []string
	decls := map[string]*goDecls{} // by directory
	declsOf := func(dir string) (*goDecls, error) {
		if d, ok := decls[dir]; ok {
			return d, nil
		}
		d, err := parseDecls(filepath.Join(root, dir))
		decls[dir] = d
		return d, err
	}
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
		return err == nil
	}

	for _, m := range tourStepRef.FindAllStringSubmatch(doc, -1) {
		file, name, link := m[1], m[2], m[3]
		if link != "../"+file {
			problems = append(problems, fmt.Sprintf("%s %s: the link points at %q, not at ../%s", file, name, link, file))
		}
		if !exists(file) {
			problems = append(problems, fmt.Sprintf("%s %s: no file %s", file, name, file))
			continue
		}
		d, err := declsOf(filepath.Dir(filepath.FromSlash(file)))
		if err != nil {
			return nil, err
		}
		if d.byFile[filepath.Base(file)][name] {
			continue
		}
		var elsewhere []string
		for f, names := range d.byFile {
			if names[name] {
				elsewhere = append(elsewhere, f)
			}
		}
		slices.Sort(elsewhere)
		if len(elsewhere) > 0 {
			problems = append(problems, fmt.Sprintf("%s %s: %s does not declare %s; it moved to %s", file, name, file, name, strings.Join(elsewhere, ", ")))
		} else {
			problems = append(problems, fmt.Sprintf("%s %s: %s is declared nowhere in package %s", file, name, name, path.Dir("github.com/tcpreactor/reactor/"+file)))
		}
	}

	for _, m := range tourFileSpan.FindAllStringSubmatch(doc, -1) {
		if !exists(m[1]) {
			problems = append(problems, fmt.Sprintf("`%s`: no such file", m[1]))
		}
	}
	for _, m := range tourRelLink.FindAllStringSubmatch(doc, -1) {
		if !exists(strings.TrimPrefix(m[1], "../")) {
			problems = append(problems, fmt.Sprintf("link %s: no such file or directory", m[1]))
		}
	}

	rootDecls, err := declsOf(".")
	if err != nil {
		return nil, err
	}
	// The step links were checked above, more strictly.
	for _, m := range tourSelector.FindAllStringSubmatch(tourStepRef.ReplaceAllString(doc, ""), -1) {
		pkg, typ, name := m[1], m[2], m[3]
		switch {
		case name == "go" && pkg == "": // a file name, checked above
		case rootDecls.members[typ] != nil || (pkg != "" && rootDecls.top[typ]):
			if !rootDecls.members[typ][name] {
				problems = append(problems, fmt.Sprintf("`%s`: %s has no method or field %s", strings.Trim(m[0], "`"), typ, name))
			}
		case pkg == "" && typ == "reactor":
			if !rootDecls.top[name] {
				problems = append(problems, fmt.Sprintf("`%s`: package reactor declares no %s", strings.Trim(m[0], "`"), name))
			}
		}
	}
	slices.Sort(problems)
	return slices.Compact(problems), nil
}

// TestTourNames checks that every file, function, method and type that
// docs/tour.md names exists in the tree, where the tour says it is, so the
// tour cannot rot when code moves.
func TestTourNames(t *testing.T) {
	doc, err := os.ReadFile(tourDoc)
	require.NoError(t, err)
	require.Regexp(t, tourStepRef, string(doc), "the tour links no step to its code")
	problems, err := tourProblems(string(doc), ".")
	require.NoError(t, err)
	assert.Empty(t, problems, "%s names code the tree does not have:\n%s", tourDoc, strings.Join(problems, "\n"))
}

// TestTourProblems checks the checker on a tour that names code wrongly in
// each way it looks for.
func TestTourProblems(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings, one per expected problem
	}{
		{name: "good", doc: "[`reactor.go` `EventLoop.iterate`](../reactor.go), `acceptor.go`, [x](../internal/sim/), `Conn.Write`, `reactor.NewSim`, `Conn.ch`, `channel.fd`"},
		{name: "missing method", doc: "[`reactor.go` `EventLoop.spin`](../reactor.go)", want: []string{"EventLoop.spin is declared nowhere"}},
		{name: "moved", doc: "[`reactor.go` `Conn.handleRead`](../reactor.go)", want: []string{"moved to connection.go"}},
		{name: "wrong link", doc: "[`reactor.go` `EventLoop.iterate`](../acceptor.go)", want: []string{"the link points at"}},
		{name: "missing file", doc: "[`nope.go` `X`](../nope.go) and `gone.go`", want: []string{"`gone.go`: no such file", "`nope.go`: no such file", "link ../nope.go", "no file nope.go"}},
		{name: "missing dir", doc: "[x](../no/such/dir)", want: []string{"link ../no/such/dir"}},
		{name: "missing member", doc: "`Conn.Teleport`", want: []string{"Conn has no method or field Teleport"}},
		{name: "missing top", doc: "`reactor.NewTeleporter`", want: []string{"declares no NewTeleporter"}},
		{name: "not ours", doc: "`unix.EAGAIN`, `in.Next`, `time.Now`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tourProblems(tc.doc, ".")
			require.NoError(t, err)
			require.Len(t, got, len(tc.want), "%q", got)
			for i, w := range tc.want {
				assert.Contains(t, got[i], w)
			}
		})
	}
}
