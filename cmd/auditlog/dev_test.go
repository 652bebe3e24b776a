package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/devenv"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// dev prepares the login roles, the demo and an owner token; a second run
// keeps the demo and the token, and prints where everything is.
func TestDevPreparesOnceAndSaysWhereThingsAre(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	dir := t.TempDir()
	e, _ := testEnv(t)

	first, err := prepareDev(ctx, e, url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !first.demo.Created || !first.tokenMinted || !strings.HasPrefix(first.token, pat.Prefix) {
		t.Fatalf("first run: demo created %v, token minted %v", first.demo.Created, first.tokenMinted)
	}
	second, err := prepareDev(ctx, e, url, dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.demo.Created || second.tokenMinted || second.token != first.token {
		t.Fatalf("second run: demo created %v, token minted %v, same token %v", second.demo.Created, second.tokenMinted, second.token == first.token)
	}
	if fi, err := os.Stat(filepath.Join(dir, devenv.TokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The token is an enterprise owner's, stored as its hash only.
	var role string
	err = conn.QueryRow(ctx, `SELECT m.role FROM cloud.pats p JOIN cloud.org_members m ON m.user_id = p.user_id
		WHERE p.token_hash = $1 AND m.org_id = $2 AND p.revoked_at IS NULL`, pat.Hash(first.token), demo.EnterpriseOrgID).Scan(&role)
	if err != nil || role != "owner" {
		t.Fatalf("token's user is %q in the enterprise org (%v)", role, err)
	}
	if !strings.Contains(second.apiURL, "auditlog_api@") {
		t.Errorf("the API connects as %s", second.apiURL)
	}
	if err := sealer.Check(ctx, second.sealerURL); err != nil {
		t.Errorf("the sealer's role cannot seal: %v", err)
	}

	var out strings.Builder
	printDev(&out, "127.0.0.1:8080", dir, second)
	for _, want := range []string{
		"http://127.0.0.1:8080/orgs/" + demo.EnterpriseOrgID + "/activity",
		"http://127.0.0.1:8080/api/orgs/" + demo.EnterpriseOrgID + "/audit",
		"Owner token:   " + first.token,
		"Authorization: Bearer " + first.token,
		"Press Ctrl-C to stop",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dev's message lacks %q:\n%s", want, out.String())
		}
	}
}
