package schema_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/importer"
	"github.com/auditlog/auditlog/internal/schema"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/migrations"
	"github.com/auditlog/auditlog/sql"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func migrate(t *testing.T, url string) schema.Result {
	t.Helper()
	ctx := context.Background()
	conn, err := database.Connect(ctx, url)
	if err != nil {
		t.Error(err)
		return schema.Result{}
	}
	defer conn.Close(ctx)
	res, err := schema.Migrate(ctx, conn, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Error(err)
	}
	return res
}

func TestMigrateEmptyDatabaseThenAgain(t *testing.T) {
	t.Parallel()
	url := testdb.NewEmpty(t)

	first := migrate(t, url)
	if first.From != 0 || first.To == 0 || len(first.Applied) != int(first.To) {
		t.Fatalf("first migrate: %+v", first)
	}
	if first.Applied[0] != "001_roles.sql" {
		t.Errorf("first migration applied was %q", first.Applied[0])
	}
	assertSchema(t, url)

	second := migrate(t, url)
	if second.From != first.To || second.To != first.To || len(second.Applied) != 0 {
		t.Fatalf("second migrate was not a no-op: %+v", second)
	}
	assertSchema(t, url)
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := testdb.NewEmpty(t)
	var wg sync.WaitGroup
	results := make([]schema.Result, 2)
	for i := range results {
		wg.Go(func() { results[i] = migrate(t, url) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := len(results[0].Applied) + len(results[1].Applied); got != int(results[0].To) {
		t.Fatalf("migrations applied %d times in all, want each once: %+v", got, results)
	}
	assertSchema(t, url)
}

// Roles are cluster-wide: two databases migrating at the same moment both
// try to create them.
func TestMigrateTwoDatabasesOfOneClusterConcurrently(t *testing.T) {
	t.Parallel()
	urls := []string{testdb.NewEmpty(t), testdb.NewEmpty(t)}
	var wg sync.WaitGroup
	for _, url := range urls {
		wg.Go(func() { migrate(t, url) })
	}
	wg.Wait()
	for _, url := range urls {
		assertSchema(t, url)
	}
}

// assertSchema checks the objects every later feature relies on exist.
func assertSchema(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, rel := range []string{"audit.events", "audit.partitions", "audit.actions", "audit.tiers",
		"audit.events_free", "audit.events_team", "audit.events_enterprise",
		"cloud.orgs", "cloud.users", "cloud.org_members", "cloud.pats"} {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", rel).Scan(&ok); err != nil || !ok {
			t.Errorf("%s missing after migrate (err %v)", rel, err)
		}
	}
	var roles int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname IN
		('audit_owner', 'audit_writer', 'audit_reader', 'audit_maintainer') AND NOT rolcanlogin`).Scan(&roles); err != nil || roles != 4 {
		t.Errorf("want the 4 NOLOGIN group roles, found %d (err %v)", roles, err)
	}
	var fn string
	if err := conn.QueryRow(ctx, "SELECT 'audit.log_event'::regproc::text").Scan(&fn); err != nil {
		t.Errorf("audit.log_event missing: %v", err)
	}
}

// Migrating a live database does not wait for, nor hold up, the writers: a
// transaction that has logged an event and not committed does not stop
// migrate, and another writer logs during it.
func TestMigrateDoesNotStallWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	logEvent := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) error {
		_, err := auditlog.Log(ctx, q, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout})
		return err
	}
	// Today's and tomorrow's leaves exist, as the retention worker keeps
	// them: a writer that made its day's leaf (the day having turned since
	// the last write) would hold the tier table until it commits, and
	// migrate would wait for it.
	if _, err := pool.Exec(ctx, "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}

	open, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(ctx)
	if err := logEvent(open); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		conn, err := database.Connect(ctx, url)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close(ctx)
		_, err = schema.Migrate(ctx, conn, slog.New(slog.DiscardHandler))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("migrate beside an open writer: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("migrate waits for a writer's transaction to end")
	}

	start := time.Now()
	if err := logEvent(pool); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a writer waited %v", d)
	}
	if err := open.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// A function of the audit schema that no file of the code package defines is
// a leftover of an older version: a migration drops it.
func TestEveryAuditFunctionIsDefinedInSQL(t *testing.T) {
	t.Parallel()
	defined := map[string]bool{}
	def := regexp.MustCompile(`(?i)FUNCTION\s+audit\.(\w+)\s*\(`)
	err := fs.WalkDir(sql.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sql.FS, path)
		for _, m := range def.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := testdb.NewPool(t).Query(context.Background(),
		"SELECT proname::text FROM pg_proc WHERE pronamespace = 'audit'::regnamespace ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no function in schema audit")
	}
	for _, name := range slices.Compact(names) {
		if !defined[name] {
			t.Errorf("function audit.%s is defined by no file under sql/", name)
		}
	}
}

// dbTags lists the db tags of a struct's fields, in order.
func dbTags(v any) []string {
	var tags []string
	for _, f := range reflect.VisibleFields(reflect.TypeOf(v)) {
		if tag := f.Tag.Get("db"); tag != "" {
			tags = append(tags, tag)
		}
	}
	return tags
}

// The event's columns are written in several places: the tier tables (a
// migration), the view audit.events, the API's store.Event, the importer's
// columns and the fixtures' StoredEvent. A column gained or lost in one of
// them shows here.
func TestEventColumnsAgree(t *testing.T) {
	t.Parallel()
	rows, err := testdb.NewPool(t).Query(context.Background(), `
		SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		WHERE c.relnamespace = 'audit'::regnamespace AND c.relname IN ('events', 'events_free', 'events_team', 'events_enterprise')
		  AND a.attnum > 0 AND NOT a.attisdropped
		GROUP BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Name    string
		Columns []string
	}])
	if err != nil {
		t.Fatal(err)
	}
	var view []string
	for _, r := range tables {
		if r.Name == "events" {
			view = r.Columns
		}
	}
	if len(tables) != 4 || len(view) == 0 {
		t.Fatalf("found %v, want audit.events and the three tier tables", tables)
	}
	for _, r := range tables {
		if !slices.Equal(r.Columns, view) {
			t.Errorf("audit.%s has columns %v, audit.events %v", r.Name, r.Columns, view)
		}
	}
	for name, cols := range map[string][]string{
		"store.Event":         dbTags(store.Event{}),
		"importer.Columns":    importer.Columns,
		"fixture.StoredEvent": dbTags(fixture.StoredEvent{}),
	} {
		if !slices.Equal(cols, view) {
			t.Errorf("%s has columns %v, audit.events %v", name, cols, view)
		}
	}
}

// The code package is written for sql.Tiers (template data): they must be
// the tiers of audit.tiers, each with its table.
func TestCodePackageTiersAreTheTable(t *testing.T) {
	t.Parallel()
	pool := testdb.NewPool(t)
	rows, err := pool.Query(context.Background(),
		"SELECT t.tier FROM audit.tiers t WHERE to_regclass('audit.events_' || t.tier) IS NOT NULL ORDER BY t.retention")
	if err != nil {
		t.Fatal(err)
	}
	tiers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tiers, sql.Tiers) {
		t.Errorf("audit.tiers with a table: %v, the code package's tiers: %v", tiers, sql.Tiers)
	}
}

// Migration 015 gives existing seals the hash of the link before them: the
// seal before, or, after a pruned stretch, the removal checkpoint holding
// it; none when neither is there.
func TestMigration015FillsEachSealsPrevHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	body, err := fs.ReadFile(migrations.FS, "015_seal_prev_hash.sql")
	if err != nil {
		t.Fatal(err)
	}
	hash := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	a, b, c := "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b", "00000000-0000-4000-8000-00000000000c"
	// As before it: no column (nor audit.sealed_events, which the code
	// package, installed after the migrations, makes to show it); org a's
	// seals 1 to 3, b's 5 and 6 after a removal checkpoint at 4, c's 8 with
	// its link before gone (a day checkpoint at 7 is not a removed link).
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{"DROP VIEW audit.sealed_events", nil},
		{"ALTER TABLE audit.seals DROP COLUMN prev_hash", nil},
		{`INSERT INTO audit.seals (org_id, seq, occurred_at, event_id, hash)
		  SELECT o::uuid, s, now(), gen_random_uuid(), h FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS x(o, s, h)`,
			[]any{[]string{a, a, a, b, b, c}, []int64{1, 2, 3, 5, 6, 8}, [][]byte{hash(1), hash(2), hash(3), hash(5), hash(6), hash(8)}}},
		{"INSERT INTO audit.seal_keys (key_id, public_key) VALUES ('k', $1)", []any{hash(0xee)}},
		{`INSERT INTO audit.checkpoints (kind, org_id, day, seq, hash, signed_at, key_id, signature)
		  VALUES ('removal', $1, NULL, 4, $2, now(), 'k', $4), ('day', $3, current_date, 7, $2, now(), 'k', $4)`,
			[]any{b, hash(4), c, bytes.Repeat([]byte{9}, 64)}},
	} {
		if _, err := pool.Exec(ctx, st.sql, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, string(body))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, "SELECT org_id::text, seq, prev_hash FROM audit.seals ORDER BY org_id, seq")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Org  string
		Seq  int64
		Prev []byte
	}])
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]byte{1: hash(0), 2: hash(1), 3: hash(2), 5: hash(4), 6: hash(5), 8: nil}
	if len(got) != len(want) {
		t.Fatalf("%d seals after the migration, want %d", len(got), len(want))
	}
	for _, s := range got {
		if !bytes.Equal(s.Prev, want[s.Seq]) {
			t.Errorf("org %s seq %d: prev_hash %x, want %x", s.Org, s.Seq, s.Prev, want[s.Seq])
		}
	}
}
