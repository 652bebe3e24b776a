package api

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// snapshot is a digest of every row of every table in the database (leaves
// included), and of the row counters PostgreSQL keeps, by table.
func snapshot(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	snap := map[string]string{}
	for _, table := range tables {
		var digest string
		err := pool.QueryRow(ctx, "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM "+table+" t").Scan(&digest)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		snap[table] = digest
	}
	return snap
}

// TestRequestsChangeNoRow: pages, exports, the catalog and refused requests
// leave every row of every table as it was; reading is not audited.
func TestRequestsChangeNoRow(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	for range 5 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "ann@example.com"})
	}
	before := snapshot(t, b.admin)
	if len(before) < 10 {
		t.Fatalf("snapshot covers only %d tables", len(before))
	}
	p, _ := b.page(t, org, token, "limit=2")
	b.page(t, org, token, "limit=2&action=auth&actor=ann%40example.com&cursor="+*p.NextCursor)
	for _, path := range []string{"/api/orgs/" + org + "/audit?format=csv", "/api/audit/actions", "/api/orgs/" + org + "/audit?limit=x", "/healthz", "/metrics"} {
		if resp, body := b.get(t, path, token); resp.StatusCode >= 500 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	b.get(t, "/api/orgs/"+org+"/audit", "alpat_unknown")
	after := snapshot(t, b.admin)
	for table, digest := range before {
		if after[table] != digest {
			t.Errorf("%s changed: %s -> %s", table, digest, after[table])
		}
	}
	if len(after) != len(before) {
		t.Errorf("tables: %d before, %d after", len(before), len(after))
	}
}

// TestCatalog: GET /api/audit/actions is audit.actions, every row.
func TestCatalog(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	_, token := b.owner(t, "free")
	resp, body := b.get(t, "/api/audit/actions", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var got struct {
		Actions []struct {
			Action       string   `json:"action"`
			TargetType   string   `json:"target_type"`
			Description  string   `json:"description"`
			RequiredKeys []string `json:"required_keys"`
			Sentence     string   `json:"sentence"`
		} `json:"actions"`
	}
	if err := decodeJSON(body, &got); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.admin.QueryRow(context.Background(), "SELECT count(*) FROM audit.actions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if len(got.Actions) != n || n < 23 {
		t.Fatalf("%d actions, the catalog has %d", len(got.Actions), n)
	}
	for _, a := range got.Actions {
		var targetType, description string
		var keys []string
		err := b.admin.QueryRow(context.Background(), "SELECT target_type, description, required_keys FROM audit.actions WHERE action = $1", a.Action).
			Scan(&targetType, &description, &keys)
		if err != nil || targetType != a.TargetType || description != a.Description || len(keys) != len(a.RequiredKeys) {
			t.Errorf("%s: served %+v, catalog %s %q %v (%v)", a.Action, a, targetType, description, keys, err)
		}
	}
}

// TestServerRoleReadsOnlyThroughFunctions: the role the API runs as reads
// tokens, memberships and the cursor key only through the functions made
// for it, never the tables, and can write nothing.
func TestServerRoleReadsOnlyThroughFunctions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	conn, err := pgx.Connect(ctx, testdb.Role(t, url, "audit_reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range []struct {
		sql     string
		allowed bool
	}{
		{"SELECT * FROM audit.authenticate('\\x00'::bytea, NULL)", true},
		{"SELECT audit.api_key('cursor')", true},
		{"SELECT audit.csv_cell('=1')", true},
		{`SELECT audit.event_sentence('pat.created', 'user', NULL, 'a@example.com', NULL, '{"name": [1.5, {"x": 1}]}')`, true},
		{"SELECT * FROM audit.org_scope('00000000-0000-0000-0000-000000000000')", true},
		{"SELECT * FROM audit.api_keys", false},
		{"SELECT token_hash FROM cloud.pats", false},
		{"SELECT * FROM cloud.org_members", false},
		{"SELECT * FROM cloud.users", false},
		{"INSERT INTO audit.api_keys (name, secret) VALUES ('x', '\\x00')", false},
		{"UPDATE cloud.pats SET revoked_at = NULL", false},
	} {
		_, err := conn.Exec(ctx, c.sql)
		var pgErr *pgconn.PgError
		switch {
		case c.allowed && err != nil:
			t.Errorf("%s: refused: %v", c.sql, err)
		case !c.allowed && (!errors.As(err, &pgErr) || pgErr.Code != "42501"):
			t.Errorf("%s: %v, want permission denied", c.sql, err)
		}
	}
}
