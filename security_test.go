package auditlog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// privilegeCase is one statement a role tries, and whether it may.
type privilegeCase struct {
	sql     string
	allowed bool
}

// tryAll runs each statement as the role at url, each in a transaction that
// is rolled back, and checks allowed ones succeed and refused ones fail with
// the SQLSTATE wantCode.
func tryAll(t *testing.T, url string, wantCode string, cases []privilegeCase) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range cases {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, c.sql)
		tx.Rollback(ctx)
		var pgErr *pgconn.PgError
		switch {
		case c.allowed && err != nil:
			t.Errorf("%s: refused: %v", c.sql, err)
		case !c.allowed && err == nil:
			t.Errorf("%s: allowed, want refused", c.sql)
		case !c.allowed && (!errors.As(err, &pgErr) || pgErr.Code != wantCode):
			t.Errorf("%s: refused with %v, want SQLSTATE %s", c.sql, err, wantCode)
		}
	}
}

// securityBundle is a database with an org, one event and so one leaf.
type securityBundle struct {
	url, org, leaf string
}

func setupSecurity(t *testing.T) securityBundle {
	t.Helper()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	id, err := auditlog.Log(context.Background(), pool, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout})
	if err != nil {
		t.Fatal(err)
	}
	// The leaf the event is in: the day of the database's clock, which may
	// have passed midnight UTC before or after this host's.
	var leaf string
	if err := pool.QueryRow(context.Background(), "SELECT tableoid::regclass::text FROM audit.events_team WHERE id = $1", id).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	return securityBundle{url: url, org: org, leaf: leaf}
}

// writes are the statements that would change an event, on the tier table
// and on the leaf.
func writes(leaf string) []string {
	var sqls []string
	for _, table := range []string{"audit.events_team", leaf} {
		sqls = append(sqls,
			"INSERT INTO "+table+" SELECT * FROM "+table+" LIMIT 0",
			"UPDATE "+table+" SET action = 'auth.signin'",
			"DELETE FROM "+table,
			"TRUNCATE "+table,
		)
	}
	return sqls
}

func TestWriterMayOnlyCallTheFunctions(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	url := testdb.Role(t, b.url, "audit_writer")
	cases := []privilegeCase{
		{"SELECT audit.set_context(actor_email => 'a@example.com')", true},
		{fmt.Sprintf("SELECT audit.log_event(org_id => '%s', action => 'auth.signout')", b.org), true},
	}
	for _, rel := range []string{"audit.events", "audit.events_team", b.leaf, "audit.actions", "audit.partitions", "audit.tiers", "cloud.orgs"} {
		cases = append(cases, privilegeCase{"SELECT 1 FROM " + rel + " LIMIT 1", false})
	}
	for _, sql := range writes(b.leaf) {
		cases = append(cases, privilegeCase{sql, false})
	}
	cases = append(cases,
		privilegeCase{"SELECT audit.make_leaf('team', current_date + 3)", false},
		privilegeCase{"INSERT INTO audit.actions VALUES ('cluster.fake', 'cluster', 'x', '{}')", false},
	)
	tryAll(t, url, "42501", cases)
}

func TestReaderMayReadButNotWrite(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	url := testdb.Role(t, b.url, "audit_reader")
	var cases []privilegeCase
	for _, rel := range []string{"audit.events", "audit.events_free", "audit.events_team", "audit.events_enterprise", b.leaf, "audit.actions", "audit.partitions", "audit.tiers"} {
		cases = append(cases, privilegeCase{"SELECT 1 FROM " + rel + " LIMIT 1", true})
	}
	for _, sql := range writes(b.leaf) {
		cases = append(cases, privilegeCase{sql, false})
	}
	cases = append(cases,
		privilegeCase{fmt.Sprintf("SELECT audit.log_event(org_id => '%s', action => 'auth.signout')", b.org), false},
		privilegeCase{"DELETE FROM audit.actions", false},
		privilegeCase{"UPDATE audit.tiers SET retention = '1 day'", false},
	)
	tryAll(t, url, "42501", cases)
}

func TestMaintainerHasNoDirectDML(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	url := testdb.Role(t, b.url, "audit_maintainer")
	var cases []privilegeCase
	for _, sql := range writes(b.leaf) {
		cases = append(cases, privilegeCase{sql, false})
	}
	cases = append(cases, privilegeCase{fmt.Sprintf("SELECT audit.log_event(org_id => '%s', action => 'auth.signout')", b.org), false})
	tryAll(t, url, "42501", cases)
}

func TestPublicGetsNothing(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	url := testdb.Role(t, b.url) // a login role with no audit role
	tryAll(t, url, "42501", []privilegeCase{
		{fmt.Sprintf("SELECT audit.log_event(org_id => '%s', action => 'auth.signout')", b.org), false},
		{"SELECT audit.set_context(actor_email => 'a@example.com')", false},
		{"SELECT 1 FROM audit.events LIMIT 1", false},
	})
}

// Even audit_owner, which owns the tables, may not change an event.
func TestOwnerCannotChangeEvents(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	var cases []privilegeCase
	for _, sql := range writes(b.leaf)[1:4] { // UPDATE, DELETE, TRUNCATE on the tier table
		cases = append(cases, privilegeCase{"SET LOCAL ROLE audit_owner; " + sql, false})
	}
	for _, sql := range writes(b.leaf)[5:] { // and on the leaf
		cases = append(cases, privilegeCase{"SET LOCAL ROLE audit_owner; " + sql, false})
	}
	tryAll(t, b.url, "42501", cases)
}

// The triggers are the second wall: even a superuser, whom privileges do not
// stop, cannot update, delete or truncate events, on the tier table or on a
// leaf made after the triggers were installed.
func TestTriggersRefuseEvenSuperuser(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	var cases []privilegeCase
	for _, sql := range writes(b.leaf) {
		if sql[:6] != "INSERT" {
			cases = append(cases, privilegeCase{sql, false})
		}
	}
	tryAll(t, b.url, "AL010", cases)
}

// A caller who makes look-alikes of the functions log_event uses, in a schema
// of its own placed first on its search_path, cannot hijack it: log_event's
// search_path is pinned.
func TestLogEventCannotBeHijacked(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	url := testdb.Role(t, b.url, "audit_writer")
	cfg, _ := pgx.ParseConfig(url)
	if _, err := admin.Exec(ctx, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", cfg.Database, cfg.User)); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		CREATE SCHEMA evil;
		GRANT USAGE ON SCHEMA evil TO PUBLIC; -- so audit_owner would see it
		CREATE FUNCTION evil.hijacked() RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked'; END $$;
		CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE FUNCTION evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
		CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
		SET search_path = evil, pg_catalog, public;
	`)
	if err != nil {
		t.Fatal(err)
	}
	// The trap works when called unqualified from the caller's own path...
	if _, err := conn.Exec(ctx, "SELECT gen_random_uuid()"); err == nil {
		t.Fatal("look-alike not on the caller's path; the test proves nothing")
	}
	// ...but not from inside log_event.
	var id string
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT audit.log_event(org_id => '%s', action => 'auth.signout')", b.org)).Scan(&id); err != nil {
		t.Fatalf("log_event called a look-alike: %v", err)
	}
	if id == "" {
		t.Fatal("no event id")
	}
}

// No setting opens the trigger wall: a session that sets what an earlier
// design used as the re-tier's flag still cannot delete, superuser or not.
func TestNoSettingOpensTheTriggerWall(t *testing.T) {
	t.Parallel()
	b := setupSecurity(t)
	tryAll(t, b.url, "AL010", []privilegeCase{
		{"SET LOCAL audit.retiering = 'on'; DELETE FROM audit.events_team", false},
		{"SET LOCAL audit.retiering = 'on'; DELETE FROM " + b.leaf, false},
	})
}
