package sqlstate_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/auditlog/auditlog/sql"
)

// The AL0xx codes named here are exactly those the code package raises: a
// code added to sql/ without a name, or a name left after its code went,
// fails.
func TestEveryProjectCodeIsRaised(t *testing.T) {
	quoted, code := regexp.MustCompile(`'(AL\d{3})'`), regexp.MustCompile(`^AL\d{3}$`)
	var raised []string
	err := fs.WalkDir(sql.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sql.FS, path)
		for _, m := range quoted.FindAllStringSubmatch(string(b), -1) {
			raised = append(raised, m[1])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	f, err := parser.ParseFile(token.NewFileSet(), "sqlstate.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if v, _ := strconv.Unquote(lit.Value); code.MatchString(v) {
				named = append(named, v)
			}
		}
		return true
	})

	slices.Sort(raised)
	raised = slices.Compact(raised)
	slices.Sort(named)
	if len(raised) == 0 || !slices.Equal(raised, named) {
		t.Errorf("sql/ raises %v; sqlstate.go names %v", raised, named)
	}
}
