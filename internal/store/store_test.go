package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// TestQueriesStreamInOrder: every shape of the events query can be run
// without sorting (with sorting disabled, a plan still sorts only if it
// must), so pages stop early and exports stream, whatever the columns
// output. The one sort allowed is the last step of a page of several
// actions, over a page per action. An ORDER BY that named an output column
// instead of the table's once sent every export through an on-disk sort.
func TestQueriesStreamInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	fixture.Event(t, pool, fixture.EventOpts{OrgID: org})
	base := Query{OrgID: org, Tiers: []string{"team"}, Since: time.Now().Add(-time.Hour),
		Before: Position{OccurredAt: time.Now().Add(time.Hour), ID: MinID}, Limit: 101}
	with := func(f func(*Query)) Query {
		q := base
		f(&q)
		return q
	}
	shapes := map[string]Query{
		"no filter":                 base,
		"one action":                with(func(q *Query) { q.Actions = []string{"auth.signout"} }),
		"several actions":           with(func(q *Query) { q.Actions = []string{"auth.signout", "auth.signin"} }),
		"actor":                     with(func(q *Query) { q.Actor = "ann@example.com" }),
		"actor and one action":      with(func(q *Query) { q.Actor = "ann@example.com"; q.Actions = []string{"auth.signin"} }),
		"actor and several actions": with(func(q *Query) { q.Actor = "ann@example.com"; q.Actions = []string{"auth.signin", "auth.signout"} }),
		"two tiers":                 with(func(q *Query) { q.Tiers = []string{"team", "free"} }),
		"two tiers, an action":      with(func(q *Query) { q.Tiers = []string{"team", "free"}; q.Actions = []string{"auth.signin"} }),
		"two tiers, several": with(func(q *Query) {
			q.Tiers = []string{"team", "free"}
			q.Actions = []string{"auth.signout", "auth.signin"}
		}),
		"no action can match": with(func(q *Query) { q.Actions = []string{} }),
	}
	for name, q := range shapes {
		for _, kind := range []queryKind{pageQuery, exportQuery, streamQuery} {
			csv := kind == exportQuery
			p := exportPlaceholders(q)
			if kind == pageQuery {
				p.Limit = "101"
			}
			sql, err := render(q, p, kind)
			if err != nil {
				t.Fatal(err)
			}
			names, values := settingArrays(exportSettings(q))
			var plan []string
			err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, exportSettingsSQL, names, values); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "SET LOCAL enable_sort = off"); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) "+sql)
				if err != nil {
					return err
				}
				plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, sql)
			}
			sorts := 0
			for _, line := range plan {
				if strings.Contains(line, "Sort  ") || strings.Contains(line, "Sort (") || strings.HasSuffix(strings.TrimSpace(line), "Sort") {
					sorts++
				}
			}
			if q.matchesNothing() && strings.Contains(strings.Join(plan, "\n"), "One-Time Filter: false") {
				continue // nothing to read, nothing to sort
			}
			lateral := len(q.Actions) > 1 && !csv
			if sorts > 0 && !(lateral && sorts == 1 && strings.Contains(plan[0], "Limit") && strings.Contains(plan[1], "Sort")) {
				t.Errorf("%s (csv %v) sorts:\n%s", name, csv, strings.Join(plan, "\n"))
			}
		}
	}
}

// TestPageRunsOnCustomPlans: pages run on plans made for their values
// (which prune leaves at plan time), still after the five runs PostgreSQL
// may switch a prepared statement to its generic plan at, and the setting
// that asks for it does not outlive the query.
func TestPageRunsOnCustomPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	pool, err := pgxpool.New(ctx, url+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	admin := testdb.Pool(t, url)
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "team"})
	id := fixture.Event(t, admin, fixture.EventOpts{OrgID: org})
	s := New(pool)
	now := time.Now()
	q := Query{OrgID: org, Tiers: []string{"team"}, Since: now.Add(-time.Hour),
		Before: Position{OccurredAt: now.Add(time.Hour), ID: MinID}, Limit: 10}
	const runs = 7
	for range runs {
		var events []ListedEvent
		err = s.Page(ctx, q, func(e ListedEvent) bool { events = append(events, e); return true })
		if err != nil || len(events) != 1 || events[0].ID != id {
			t.Fatalf("page: %v, %v", events, err)
		}
	}
	var generic, custom int64
	var mode string
	err = pool.QueryRow(ctx, `SELECT sum(generic_plans), sum(custom_plans), current_setting('plan_cache_mode')
		FROM pg_prepared_statements WHERE statement LIKE '%FROM audit.events_team%LIMIT%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&generic, &custom, &mode)
	if err != nil {
		t.Fatal(err)
	}
	if generic != 0 || custom < runs {
		t.Errorf("pages planned %d generic and %d custom plans, want %d custom", generic, custom, runs)
	}
	if mode != "auto" {
		t.Errorf("plan_cache_mode left at %q", mode)
	}
}

// TestReadsLockOnlyTheirWindow counts the relation locks the reading
// backend holds at every row of a 7-day page and of a 120-day CSV export,
// on a tier table of 124 leaves: a few dozen at most (the leaves of the
// statement's range and their indexes), where a read planned without its
// bounds locks every leaf. Today's events outweigh the socket buffers, so
// when the first row reaches the client the statement is still running and
// holds its locks.
func TestReadsLockOnlyTheirWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	admin := testdb.Pool(t, url)
	pool, err := pgxpool.New(ctx, url+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var pid int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "enterprise"})
	_, err = admin.Exec(ctx, "SELECT audit.make_leaf('enterprise', (now() AT TIME ZONE 'UTC')::date - d) FROM generate_series(-3, 120) d")
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(ctx, `
		INSERT INTO audit.events_enterprise (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		SELECT gen_random_uuid(), $1,
		       CASE WHEN i < 600 THEN now() - i * interval '1 second' ELSE now() - (i - 599) * interval '1 day' END,
		       'auth.signout', 'auth', 'system', jsonb_build_object('blob', repeat(md5(i::text), 250))
		FROM generate_series(0, 719) i`, org)
	if err != nil {
		t.Fatal(err)
	}
	// A week's 8 leaves, the 3 made ahead, 4 locks each (the leaf, its
	// indexes), the tier table, and audit.seals with its 2 indexes (the
	// events' seals).
	const most = 48
	locks := func() int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'relation'", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	s := New(pool)
	now := time.Now()
	week := Query{OrgID: org, Tiers: []string{"enterprise"}, Since: now.Add(-7 * 24 * time.Hour),
		Before: Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: MinID}, Now: now, Limit: 1000}

	held, rows := 0, 0
	err = s.Page(ctx, week, func(ListedEvent) bool {
		held = max(held, locks())
		rows++
		return true
	})
	t.Logf("7-day page: up to %d locks", held)
	if err != nil || rows != 606 || held == 0 || held > most {
		t.Errorf("7-day page: %d events, %v, the reader held up to %d relation locks, want 1 to %d", rows, err, held, most)
	}

	all := week
	all.Since = now.Add(-121 * 24 * time.Hour)
	w := &lockSampler{locks: locks}
	if _, err := s.Export(ctx, all, w); err != nil {
		t.Fatal(err)
	}
	t.Logf("export of 120 days: up to %d locks", w.most)
	if w.rows != 721 || w.most == 0 || w.most > most {
		t.Errorf("export of 120 days: %d rows, the reader held up to %d relation locks, want 1 to %d", w.rows, w.most, most)
	}
}

// lockSampler counts the reader's locks at every row of an export it
// receives, and keeps the most.
type lockSampler struct {
	locks      func() int
	rows, most int
}

func (l *lockSampler) Write(p []byte) (int, error) {
	l.rows++
	l.most = max(l.most, l.locks())
	return len(p), nil
}
