package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// `auditlog import FILE` loads a good file and says so; a file with a bad row
// fails, naming the line and the reason, with progress on stderr.
func TestImportCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	org := fixture.Org(t, testdb.Pool(t, url), fixture.OrgOpts{Plan: "team"})
	maintainer := testdb.Role(t, url, "audit_maintainer")
	at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	bad := filepath.Join(dir, "bad.ndjson")
	os.WriteFile(good, []byte("org_id,occurred_at,action,metadata\n"+org+","+at+",auth.signin,\"{\"\"method\"\":\"\"sso\"\"}\"\n"), 0o644)
	os.WriteFile(bad, []byte(fmt.Sprintf(`{"org_id":%q,"occurred_at":%q,"action":"auth.signout"}`+"\n"+
		`{"org_id":%q,"occurred_at":%q,"action":"auth.signin"}`+"\n", org, at, org, at)), 0o644)

	var stdout, stderr strings.Builder
	if err := run(ctx, []string{"import", "--database-url", maintainer, good}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "1 rows read in 1 batches: 1 loaded") || !strings.Contains(stderr.String(), "import: done: 1 rows read") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	// Its row has no id: imported again, it is found stored, as the message
	// of a refused import promises.
	stdout.Reset()
	if err := run(ctx, []string{"import", "--database-url", maintainer, good}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "1 rows read in 1 batches: 0 loaded, 0 skipped as older than their org's retention, 1 skipped as already stored") {
		t.Fatalf("the good file again:\n%s", stdout.String())
	}

	stdout.Reset()
	err := run(ctx, []string{"import", "--database-url", maintainer, bad}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "2 rows refused") {
		t.Fatalf("bad file: %v", err)
	}
	if !strings.Contains(stdout.String(), "line 2: AL004 action auth.signin requires metadata keys method; missing: method") {
		t.Fatalf("bad file's report:\n%s", stdout.String())
	}
}
