package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// pools opens a new test database twice: as its superuser, and with the
// connection parameters params ("&name=value...") for the reader.
func pools(t *testing.T, params string) (admin, reader *pgxpool.Pool) {
	url := testdb.New(t)
	return testdb.Pool(t, url), testdb.Pool(t, url+params)
}

// TestQueriesStreamInOrder: every shape of the events query can be run
// without sorting (with sorting disabled, a plan still sorts only if it
// must), so pages stop early and exports stream, whatever the columns
// output. The one sort allowed keeps a page of several actions, under its
// limit, from a page per action. An ORDER BY that named an output column
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
			sorts, sortsAPage := 0, false
			for i, line := range plan {
				if strings.Contains(line, "Sort  ") || strings.Contains(line, "Sort (") || strings.HasSuffix(strings.TrimSpace(line), "Sort") {
					sorts++
					sortsAPage = i > 0 && strings.Contains(plan[i-1], "Limit")
				}
			}
			if q.matchesNothing() && strings.Contains(strings.Join(plan, "\n"), "One-Time Filter: false") {
				continue // nothing to read, nothing to sort
			}
			lateral := len(q.Actions) > 1 && !csv
			if sorts > 0 && !(lateral && sorts == 1 && sortsAPage) {
				t.Errorf("%s (csv %v) sorts:\n%s", name, csv, strings.Join(plan, "\n"))
			}
		}
	}
}

// TestPagesRunOnPlansPrunedToTheirWindow: pages run on the generic plan of
// their prepared statement, made once and kept (PostgreSQL would otherwise
// plan each run afresh, for about 0.1 ms a leaf), and the setting that asks
// for it does not outlive the query.
func TestPagesRunOnPlansPrunedToTheirWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, pool := pools(t, "&pool_max_conns=1")
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "team"})
	id := fixture.Event(t, admin, fixture.EventOpts{OrgID: org})
	s := New(pool)
	now := time.Now()
	q := Query{OrgID: org, Tiers: []string{"team"}, Since: now.Add(-time.Hour),
		Before: Position{OccurredAt: now.Add(time.Hour), ID: MinID}, Limit: 10}
	const runs = 7
	for range runs {
		var events []ListedEvent
		err := s.Page(ctx, q, func(e ListedEvent) bool { events = append(events, e); return true })
		if err != nil || len(events) != 1 || events[0].ID != id {
			t.Fatalf("page: %v, %v", events, err)
		}
	}
	var generic, custom int64
	var mode string
	err := pool.QueryRow(ctx, `SELECT sum(generic_plans), sum(custom_plans), current_setting('plan_cache_mode')
		FROM pg_prepared_statements WHERE statement LIKE '%FROM audit.events_team%LIMIT%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&generic, &custom, &mode)
	if err != nil {
		t.Fatal(err)
	}
	if generic < runs || custom != 0 {
		t.Errorf("pages planned %d generic and %d custom plans, want %d generic", generic, custom, runs)
	}
	if mode != "auto" {
		t.Errorf("plan_cache_mode left at %q", mode)
	}
}

// TestLongReadsWaitForNoLeafOutsideTheirRange: a 60-day page that today's
// leaf does not fill, and a 60-day count, read while another transaction
// holds a leaf of 100 days ago locked, with a lock_timeout: a read that
// locked every leaf of the tier would wait for it and fail.
func TestLongReadsWaitForNoLeafOutsideTheirRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, pool := pools(t, "&lock_timeout=2000")
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "enterprise"})
	// A day apart in UTC (AddDate counts days of this host's zone, which
	// across a DST change are an hour off UTC's: a UTC day could go empty).
	for d := range 100 {
		fixture.Event(t, admin, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Duration(d) * 24 * time.Hour)})
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var leaf string
	err = tx.QueryRow(ctx, `SELECT leaf FROM audit.partitions
		WHERE tier = 'enterprise' AND range_start = (now() AT TIME ZONE 'UTC')::date - 99`).Scan(&leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE audit."+pgx.Identifier{leaf}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	s := New(pool)
	now := time.Now()
	q := Query{OrgID: org, Tiers: []string{"enterprise"}, Since: now.Add(-60 * 24 * time.Hour),
		Before: Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: MinID}, Now: now, Limit: 100}
	rows := 0
	if err := s.Page(ctx, q, func(ListedEvent) bool { rows++; return true }); err != nil || rows != 60 {
		t.Errorf("60-day page: %d events, %v; want 60", rows, err)
	}
	q.Bucket, q.Zone = "day", "UTC"
	days, err := s.CountByBucket(ctx, q)
	if err != nil || len(days) != 60 {
		t.Errorf("60-day count: %d days, %v; want 60", len(days), err)
	}
}

// TestReadsLockOnlyTheirWindow counts the relation locks the reading
// backend holds at every row of a 7-day page, of a 120-day page and of a
// 120-day CSV export,
// on a tier table of 124 leaves: a few dozen at most (the leaves of the
// statement's range and their indexes), where a read planned without its
// bounds locks every leaf. Today's events outweigh the socket buffers, so
// when the first row reaches the client the statement is still running and
// holds its locks.
func TestReadsLockOnlyTheirWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, pool := pools(t, "&pool_max_conns=1")
	var pid int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "enterprise"})
	_, err := admin.Exec(ctx, "SELECT audit.make_leaf('enterprise', (now() AT TIME ZONE 'UTC')::date - d) FROM generate_series(-3, 120) d")
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

	// A page of each range, counting the locks at every event: today's leaf
	// does not fill a page of 1000 over 120 days, so the rest of that range
	// is read too, a window at a time.
	all := week
	all.Since = now.Add(-121 * 24 * time.Hour)
	for _, c := range []struct {
		name   string
		q      Query
		events int
	}{{"7-day page", week, 606}, {"120-day page", all, 720}} {
		held, rows := 0, 0
		err := s.Page(ctx, c.q, func(ListedEvent) bool {
			held = max(held, locks())
			rows++
			return true
		})
		t.Logf("%s: up to %d locks", c.name, held)
		if err != nil || rows != c.events || held == 0 || held > most {
			t.Errorf("%s: %d events, %v, the reader held up to %d relation locks, want %d events, 1 to %d locks", c.name, rows, err, held, c.events, most)
		}
	}

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

// TestPageWalkAcrossWindows walks 40 days of an org's events 1, 2 and 5 at
// a time, following each page's last event as the next one's position, and
// finds every event once, in order, and the same counts per day as the
// table: windows meet at midnights, where some events sit exactly, several
// at one instant, and a position may fall on one.
func TestPageWalkAcrossWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"})
	now := time.Now()
	y, m, d := now.UTC().Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	for day := range 40 {
		at := today.AddDate(0, 0, -day)
		for range 1 + day%3 {
			fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: at})
		}
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: at.Add(time.Duration(day) * time.Hour / 3)})
	}
	since := today.AddDate(0, 0, -39)
	rows, err := pool.Query(ctx, `SELECT id::text FROM audit.events_enterprise
		WHERE org_id = $1 AND occurred_at >= $2 ORDER BY occurred_at DESC, id DESC`, org, since)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	s := New(pool)
	q := Query{OrgID: org, Tiers: []string{"enterprise"}, Since: since,
		Before: Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: MinID}, Now: now}
	for _, limit := range []int{1, 2, 5} {
		walk := q
		walk.Limit = limit
		var got []string
		for range len(want) {
			var page []ListedEvent
			if err := s.Page(ctx, walk, func(e ListedEvent) bool { page = append(page, e); return true }); err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				got = append(got, e.ID)
			}
			if len(page) < limit {
				break
			}
			last := page[len(page)-1]
			walk.Before = Position{OccurredAt: last.OccurredAt, ID: last.ID}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("walk %d at a time found %d events, want the %d of the table in order", limit, len(got), len(want))
		}
	}
	q.Bucket, q.Zone = "day", "UTC"
	days, err := s.CountByBucket(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for i, c := range days {
		total += c.Count
		if i > 0 && !c.Start.After(days[i-1].Start) {
			t.Errorf("days out of order: %v", days)
		}
	}
	if len(days) != 40 || total != int64(len(want)) {
		t.Errorf("counts: %d days, %d events; want 40 days, %d events", len(days), total, len(want))
	}
}

// TestWindowsKeepAnInstantWithIDs: a range up to an event at a midnight
// still holds the events of that instant with lower ids, in exactly one
// window, wherever the grid of windows falls.
func TestWindowsKeepAnInstantWithIDs(t *testing.T) {
	t.Parallel()
	midnight := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	at := Position{OccurredAt: midnight, ID: "80000000-0000-0000-0000-000000000000"}
	below := Position{OccurredAt: midnight, ID: "10000000-0000-0000-0000-000000000000"}
	holds := func(w Query, p Position) bool {
		if p.OccurredAt.Before(w.Since) {
			return false
		}
		return p.OccurredAt.Before(w.Before.OccurredAt) || p.OccurredAt.Equal(w.Before.OccurredAt) && p.ID < w.Before.ID
	}
	for _, since := range []time.Time{midnight, midnight.AddDate(0, 0, -30)} {
		for ahead := range 10 {
			q := Query{Since: since, Before: at, Now: midnight.AddDate(0, 0, ahead)}
			n := 0
			for _, w := range q.windows() {
				if holds(w, below) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("since %s, now %d days ahead: %d windows hold an event of the position's instant, want 1", since, ahead, n)
			}
		}
	}
}

// TestNextRoundReachesAsFarAsThePageNeeds: a page reads today's window
// alone, then as far as the events found so far say it needs, and half
// again; four times as far (8 days at least) when it found none.
func TestNextRoundReachesAsFarAsThePageNeeds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	q := Query{Since: now.AddDate(-1, 0, 0), Before: Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: MinID}, Now: now}
	ws := q.windows()
	midnight := ws[0].Since
	reached := func(n int, rest []Query) float64 { return now.Sub(rest[n-1].Since).Hours() / 24 }
	if n := nextRound(ws, now, time.Time{}, 0, 100); n != 1 {
		t.Errorf("first round: %d windows, want today's alone", n)
	}
	rest := ws[1:]
	if d := reached(nextRound(rest, now, midnight, 0, 100), rest); d < 8 || d > 16 {
		t.Errorf("nothing found today: the next round reaches %.1f days back, want 8 to 16", d)
	}
	// One event in the half day read: 100 more take about 50 days.
	if d := reached(nextRound(rest, now, midnight, 1, 100), rest); d < 75 || d > 84 {
		t.Errorf("1 event found in half a day, 100 wanted: the next round reaches %.1f days back, want about 75", d)
	}
	if n := nextRound(rest[3:], now, rest[2].Since, 1, 1000); n != len(rest)-3 {
		t.Errorf("1 event in 8 days, 1000 wanted: the next round reads %d of the %d windows left, want all", n, len(rest)-3)
	}
}

// TestFilteredPagesReadAlongTheFiltersIndex: on a leaf of many orgs'
// events, analysed, the generic plan of a page of a rare action, of several
// actions and of an actor scans the leaf along the action or actor index,
// not along the primary key, which reads every event of the org in the
// window to find a few. With the window's exact bounds as two comparisons
// of occurred_at with parameters, the planner guessed every index of the
// leaf to return one row and took the primary key.
func TestFilteredPagesReadAlongTheFiltersIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, pool := pools(t, "&pool_max_conns=1")
	now := time.Now()
	y, m, d := now.UTC().Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if _, err := admin.Exec(ctx, "SELECT audit.make_leaf('team', $1::date)", today); err != nil {
		t.Fatal(err)
	}
	var orgs []string
	for range 200 {
		orgs = append(orgs, fixture.Org(t, admin, fixture.OrgOpts{Plan: "team"}))
	}
	// 100 sign-ins of each of 200 orgs today, then 3 clusters made by one member of
	// the first.
	_, err := admin.Exec(ctx, `
		INSERT INTO audit.events_team (id, org_id, occurred_at, action, target_type, actor_type, actor_email, metadata)
		SELECT gen_random_uuid(), o, $2::timestamptz + i * interval '1 second', 'auth.signin', 'auth', 'user',
		       'member' || i % 5 || '@example.com', '{}'::jsonb
		FROM unnest($1::uuid[]) o, generate_series(1, 100) i
		UNION ALL
		SELECT gen_random_uuid(), ($1::uuid[])[1], $2::timestamptz + i * interval '1 minute', 'cluster.created', 'cluster', 'user',
		       'rare@example.com', '{"cluster_id": "c"}'::jsonb
		FROM generate_series(1, 3) i`, orgs, today)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ANALYZE audit.events_team"); err != nil {
		t.Fatal(err)
	}
	base := Query{OrgID: orgs[0], Tiers: []string{"team"}, Since: today,
		Before: Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: MinID}, Now: now, Limit: 101}
	for _, c := range []struct {
		name, index string
		q           func(*Query)
	}{
		{"one action", "_org_id_action_", func(q *Query) { q.Actions = []string{"cluster.created"} }},
		{"several actions", "_org_id_action_", func(q *Query) { q.Actions = []string{"cluster.created", "cluster.deleted"} }},
		{"actor", "_org_id_lower_", func(q *Query) { q.Actor = "RARE@example.com" }},
	} {
		q := base
		c.q(&q)
		var got int
		if err := New(pool).Page(ctx, q, func(ListedEvent) bool { got++; return true }); err != nil || got != 3 {
			t.Errorf("%s: %d events, %v; want 3", c.name, got, err)
		}
		plan := explainPage(t, pool, q.pageWindows()[0], "COSTS OFF")
		leaf := "events_team_p" + today.Format("20060102")
		scan := ""
		for _, line := range plan {
			if strings.Contains(line, " on "+leaf+" ") {
				scan = strings.TrimSpace(line)
			}
		}
		if !strings.Contains(scan, leaf+c.index) {
			t.Errorf("%s: today's leaf is read by %q, want its index %s...:\n%s", c.name, scan, c.index, strings.Join(plan, "\n"))
		}
	}
}

// sqlLiteral writes a bind parameter of a page statement as an SQL literal.
func sqlLiteral(t *testing.T, v any) string {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	switch v := v.(type) {
	case time.Time:
		return timeLiteral(v)
	case string:
		return quote(v)
	case []string:
		return quote(textArray(v)) + "::text[]"
	case int:
		return fmt.Sprint(v)
	}
	t.Fatalf("no literal for a %T", v)
	return ""
}

// explainPage runs EXPLAIN with options on the generic plan of window w's
// page statement, as Page runs it, and returns the plan's lines.
func explainPage(t *testing.T, pool *pgxpool.Pool, w Query, options string) []string {
	t.Helper()
	ctx := context.Background()
	sql, args, err := statement(w, pageQuery)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, genericPlanSQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "PREPARE page AS "+sql); err != nil {
			return err
		}
		// EXECUTE under EXPLAIN takes no bind parameters.
		params := make([]string, len(args))
		for i, a := range args {
			params[i] = sqlLiteral(t, a)
		}
		rows, err := tx.Query(ctx, "EXPLAIN ("+options+") EXECUTE page("+strings.Join(params, ", ")+")")
		if err != nil {
			return err
		}
		if plan, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DEALLOCATE page")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestPageOfSeveralActionsLooksUpTheSealsOfItsEventsOnly: a page of two
// actions reads a page's worth of each, and looks up the seals of the
// events it keeps, not of every event read.
func TestPageOfSeveralActionsLooksUpTheSealsOfItsEventsOnly(t *testing.T) {
	t.Parallel()
	admin, pool := pools(t, "&pool_max_conns=1")
	org := fixture.Org(t, admin, fixture.OrgOpts{Plan: "team"})
	now := time.Now()
	for i := range 20 {
		fixture.Event(t, admin, fixture.EventOpts{OrgID: org, Action: []string{"auth.signin", "auth.signout"}[i%2],
			OccurredAt: now.Add(-time.Duration(i) * time.Second)})
	}
	q := Query{OrgID: org, Tiers: []string{"team"}, Since: now.Add(-time.Hour), Actions: []string{"auth.signin", "auth.signout"},
		Before: Position{OccurredAt: now.Add(time.Hour), ID: MinID}, Now: now, Limit: 5}
	plan := explainPage(t, pool, q, "ANALYZE, COSTS OFF, TIMING OFF")
	for _, line := range plan {
		if strings.Contains(line, "seals_event_key") && !strings.Contains(line, "loops=5)") {
			t.Errorf("seals looked up %s, want once per event of the page of 5:\n%s", line, strings.Join(plan, "\n"))
		}
	}
	if !strings.Contains(strings.Join(plan, "\n"), "seals_event_key") {
		t.Errorf("no seal looked up:\n%s", strings.Join(plan, "\n"))
	}
}
