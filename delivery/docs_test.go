package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// verifyCase is a request a documented verifier is given, and its verdict.
type verifyCase struct {
	Name      string `json:"name"`
	Timestamp string `json:"timestamp"`
	Signature string `json:"signature"`
	Body      string `json:"body"`
	Want      bool   `json:"want"`
}

// TestDocumentedVerifiersCheckADelivery runs the receiver code of
// docs/delivery.md, Go and Python, on a real signed delivery: each accepts
// it, and rejects it altered, replayed past 5 minutes, or with malformed
// headers (rejects: a receiver must not fail on them).
func TestDocumentedVerifiersCheckADelivery(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/delivery.md")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	var got verifyCase
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		b, _ := io.ReadAll(r.Body)
		got = verifyCase{Name: "a delivery", Timestamp: r.Header.Get(delivery.HeaderTimestamp), Signature: r.Header.Get(delivery.HeaderSignature), Body: string(b), Want: true}
		return true
	})
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	deliverer := testdb.Pool(t, testdb.Role(t, e.url, "audit_deliverer"))
	if _, err := delivery.Test(context.Background(), deliverer, e.key, guard(rc), org, id); err != nil || got.Signature == "" {
		t.Fatalf("no delivery: %v", err)
	}
	old := strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10)
	cases := []verifyCase{got,
		{"altered", got.Timestamp, got.Signature, got.Body + " ", false},
		{"replayed", old, delivery.Sign(rc.secret, time.Now().Add(-6*time.Minute), []byte(got.Body)), got.Body, false},
		{"no headers", "", "", got.Body, false},
		{"non-ASCII signature", got.Timestamp, "v1=é", got.Body, false},
		{"superscript timestamp", "²", got.Signature, got.Body, false},
	}
	input, _ := json.Marshal(map[string]any{"secret": rc.secret, "cases": cases})
	dir := t.TempDir()

	goSrc := "package main\n\nimport (\n\t\"crypto/hmac\"\n\t\"crypto/sha256\"\n\t\"encoding/hex\"\n\t\"encoding/json\"\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n\t\"strconv\"\n\t\"time\"\n)\n\n" +
		docBlock(t, doc, "go", "func verify(") + `
func main() {
	var in struct {
		Secret string
		Cases  []struct{ Name, Timestamp, Signature, Body string; Want bool }
	}
	json.NewDecoder(os.Stdin).Decode(&in)
	for _, c := range in.Cases {
		r, _ := http.NewRequest("POST", "https://receiver.example/", nil)
		r.Header.Set("Auditlog-Timestamp", c.Timestamp)
		r.Header.Set("Auditlog-Signature", c.Signature)
		if verify(in.Secret, r, []byte(c.Body)) != c.Want {
			fmt.Println(c.Name)
		}
	}
}
`
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(goSrc), 0o600)
	run(t, "Go", string(input), "go", "run", filepath.Join(dir, "main.go"))

	pySrc := docBlock(t, doc, "python", "def verify(") + `
import json, sys
inp = json.load(sys.stdin)
for c in inp["cases"]:
    headers = {"Auditlog-Timestamp": c["timestamp"], "Auditlog-Signature": c["signature"]}
    try:
        ok = verify(inp["secret"], headers, c["body"].encode())
    except Exception as e:
        ok = repr(e)
    if ok != c["want"]:
        print(c["name"], ok)
`
	os.WriteFile(filepath.Join(dir, "verify.py"), []byte(pySrc), 0o600)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	run(t, "Python", string(input), "python3", filepath.Join(dir, "verify.py"))
}

// docBlock is the fenced code block of lang in doc that holds marker.
func docBlock(t *testing.T, doc []byte, lang, marker string) string {
	t.Helper()
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllSubmatch(doc, -1) {
		if strings.Contains(string(m[1]), marker) {
			return string(m[1])
		}
	}
	t.Fatalf("docs/delivery.md has no %s block with %q", lang, marker)
	return ""
}

// run runs a documented verifier on input; it prints the cases it gets wrong.
func run(t *testing.T, what, input string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("the documented %s verifier: %v, wrong on:\n%s", what, err, out)
	}
}
