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
	pagePlaceholders := settingPlaceholders
	pagePlaceholders.Limit = "101"
	for name, q := range shapes {
		for _, kind := range []queryKind{pageQuery, exportQuery} {
			csv := kind == exportQuery
			p := pagePlaceholders
			if csv {
				p = settingPlaceholders
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

// TestPageRunsOnAGenericPlan: pages run on their prepared statement's
// generic plan (no planning per request), and the setting that asks for it
// does not outlive the query.
func TestPageRunsOnAGenericPlan(t *testing.T) {
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
	q := Query{OrgID: org, Tiers: []string{"team"}, Since: time.Now().Add(-time.Hour),
		Before: Position{OccurredAt: time.Now().Add(time.Hour), ID: MinID}, Limit: 10}
	var events []Event
	err = s.Page(ctx, q, func(e Event) bool { events = append(events, e); return true })
	if err != nil || len(events) != 1 || events[0].ID != id {
		t.Fatalf("page: %v, %v", events, err)
	}
	var generic, custom int64
	var mode string
	err = pool.QueryRow(ctx, `SELECT generic_plans, custom_plans, current_setting('plan_cache_mode')
		FROM pg_prepared_statements WHERE statement LIKE '%FROM audit.events_team%LIMIT%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&generic, &custom, &mode)
	if err != nil {
		t.Fatal(err)
	}
	if generic != 1 || custom != 0 {
		t.Errorf("page planned %d generic and %d custom plans, want one generic", generic, custom)
	}
	if mode != "auto" {
		t.Errorf("plan_cache_mode left at %q", mode)
	}
}
