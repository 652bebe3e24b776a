package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/api"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/testdb"
)

// TestTokenCreate mints a token with the command: it is printed once, only
// its hash is stored, pat.created is recorded as the member, and the API
// accepts it.
func TestTokenCreate(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	ctx := context.Background()
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	_, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})

	e, out := testEnv(t)
	err := run(ctx, []string{"token", "create", "--org", org, "--email", email, "--name", "ci", "--expires", "30d", "--database-url", url}, e.stdout, e.stderr)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	if !strings.HasPrefix(token, pat.Prefix) || strings.Contains(token, "\n") {
		t.Fatalf("printed %q, want the token alone", out.String())
	}
	var name string
	var expires time.Time
	if err := pool.QueryRow(ctx, "SELECT name, expires_at FROM cloud.pats WHERE token_hash = $1", pat.Hash(token)).Scan(&name, &expires); err != nil {
		t.Fatalf("stored token: %v", err)
	}
	if d := time.Until(expires); name != "ci" || d < 29*24*time.Hour || d > 30*24*time.Hour {
		t.Fatalf("stored %q expiring in %v", name, d)
	}
	var actor string
	if err := pool.QueryRow(ctx, "SELECT actor_email FROM audit.events WHERE org_id = $1 AND action = 'pat.created'", org).Scan(&actor); err != nil || actor != email {
		t.Fatalf("pat.created by %q: %v", actor, err)
	}

	srv := httptest.NewServer(api.New(api.Config{Pool: testdb.Pool(t, testdb.Role(t, url, "audit_reader"))}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/orgs/"+org+"/audit", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the API answered %d to the minted token", resp.StatusCode)
	}
}

func TestTokenCreateRefuses(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	_, stranger := fixture.User(t, pool, fixture.UserOpts{})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token"}, "subcommand"},
		{[]string{"token", "create", "--email", stranger, "--database-url", url}, "--org and --email are required"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "soon", "--database-url", url}, "--expires"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "281474976710656d", "--database-url", url}, "longer than the 365 days"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "99999999999999999999d", "--database-url", url}, "longer than the 365 days"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "366d", "--database-url", url}, "longer than the 365 days"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "8761h", "--database-url", url}, "longer than the 365 days"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--expires", "9999999999h", "--database-url", url}, "at most 365d"},
		{[]string{"token", "create", "--org", org, "--email", stranger, "--database-url", url}, "not a member"},
	} {
		e, out := testEnv(t)
		err := run(context.Background(), c.args, e.stdout, e.stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) || out.Len() != 0 {
			t.Errorf("%v: %v (printed %q), want an error about %s", c.args, err, out, c.want)
		}
	}
}
