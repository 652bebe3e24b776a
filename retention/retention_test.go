package retention_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/retention"
)

func TestMain(m *testing.M) { testdb.Main(m) }

var retentionOf = map[string]time.Duration{
	"free":       7 * 24 * time.Hour,
	"team":       30 * 24 * time.Hour,
	"enterprise": 365 * 24 * time.Hour,
}

// testBundle is a migrated database: a superuser pool for fixtures and
// checks, and the URL of a login role set up as docs/retention.md says for
// the worker (audit_maintainer and audit_owner).
type testBundle struct {
	url       string
	pool      *pgxpool.Pool
	workerURL string
}

func setup(t *testing.T) testBundle {
	t.Helper()
	url := testdb.New(t)
	b := testBundle{url: url, pool: testdb.Pool(t, url), workerURL: testdb.Role(t, url, "audit_maintainer", "audit_owner")}
	// NOINHERIT, as docs/retention.md advises: audit_owner's powers only
	// after the worker's SET ROLE around the detach.
	cfg, err := pgx.ParseConfig(b.workerURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{cfg.User}.Sanitize()+" NOINHERIT"); err != nil {
		t.Fatal(err)
	}
	return b
}

// worker returns a worker connecting as the worker role, with quick retries.
func (b testBundle) worker(t *testing.T, cfg retention.Config) *retention.Worker {
	t.Helper()
	return workerAt(t, b.workerURL, cfg)
}

func workerAt(t *testing.T, url string, cfg retention.Config) *retention.Worker {
	t.Helper()
	cfg.Backoff = cmpOr(cfg.Backoff, 50*time.Millisecond)
	w, err := retention.New(testdb.Pool(t, url), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// at is a fixed clock.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func runOnce(t *testing.T, w *retention.Worker) retention.Report {
	t.Helper()
	r, err := w.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("pass: %v (report %+v)", err, r)
	}
	return r
}

// midnight is the start of today, UTC: with it as the clock, every tier's
// retention horizon falls on a leaf boundary.
func midnight() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) }

func leafOf(tier string, t time.Time) string {
	return "events_" + tier + "_p" + t.UTC().Format("20060102")
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func leafExists(t *testing.T, pool *pgxpool.Pool, leaf string) bool {
	t.Helper()
	return count(t, pool, "SELECT count(*) FROM pg_class WHERE relname = $1 AND relnamespace = 'audit'::regnamespace", leaf) == 1
}

// inTier counts an event (by id) in a tier table.
func inTier(t *testing.T, pool *pgxpool.Pool, tier, id string) int {
	t.Helper()
	return count(t, pool, "SELECT count(*) FROM audit.events_"+tier+" WHERE id = $1", id)
}

// visible lists the ids audit.events shows of an org, oldest first.
func visible(t *testing.T, pool *pgxpool.Pool, org string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT id::text FROM audit.events WHERE org_id = $1 ORDER BY occurred_at", org)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func logEvent(ctx context.Context, pool *pgxpool.Pool, org string) (string, error) {
	return auditlog.Log(ctx, pool, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout})
}

// exec runs a statement of the test's own (as the pool's role), failing the
// test if it fails.
func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// maintainer connects as a login role holding audit_maintainer alone: what
// a maintainer may call by hand.
func maintainer(t *testing.T, b testBundle) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.Role(t, b.url, "audit_maintainer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// tierCounts counts an org's events in each tier table.
func tierCounts(t *testing.T, pool *pgxpool.Pool, org string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for tier := range retentionOf {
		n[tier] = count(t, pool, "SELECT count(*) FROM audit.events_"+tier+" WHERE org_id = $1", org)
	}
	return n
}

// changeIDs lists an org's plan changes, oldest first.
func changeIDs(t *testing.T, pool *pgxpool.Pool, org string) []int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT id FROM audit.plan_changes WHERE org_id = $1 ORDER BY id", org)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// For each tier, an event a minute before the retention horizon and one a
// minute after it, with the clock at midnight so the horizon is a leaf
// boundary: the pass drops the older one's leaf and keeps the newer one's.
func TestHorizonPerTier(t *testing.T) {
	t.Parallel()
	for _, tier := range []string{"free", "team", "enterprise"} {
		t.Run(tier, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			clock := midnight()
			horizon := clock.Add(-retentionOf[tier])
			org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: tier})
			older := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: horizon.Add(-time.Minute)})
			newer := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: horizon.Add(time.Minute)})

			r := runOnce(t, b.worker(t, retention.Config{Now: at(clock)}))

			if !slices.Contains(r.Dropped, leafOf(tier, horizon.Add(-time.Minute))) {
				t.Errorf("dropped %v, want the leaf of the day before the horizon", r.Dropped)
			}
			if inTier(t, b.pool, tier, older) != 0 || leafExists(t, b.pool, leafOf(tier, horizon.Add(-time.Minute))) {
				t.Error("the event a minute past retention is still stored")
			}
			if inTier(t, b.pool, tier, newer) != 1 || !leafExists(t, b.pool, leafOf(tier, horizon)) {
				t.Error("the event a minute within retention is gone")
			}
			var floor time.Time
			if err := b.pool.QueryRow(context.Background(), "SELECT floor FROM audit.org_scope($1, $2)", org, clock).Scan(&floor); err != nil {
				t.Fatal(err)
			}
			if !floor.Equal(horizon) {
				t.Errorf("read floor %s, want the horizon %s", floor, horizon)
			}
		})
	}
}

// audit.events hides an event past its org's retention although its leaf,
// which also holds newer events, is still there.
func TestReadsNeverSeeExpiredEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for tier, keep := range retentionOf {
		org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: tier})
		now := time.Now()
		older := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-keep - time.Minute)})
		newer := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-keep + time.Minute)})
		if got := visible(t, b.pool, org); !slices.Equal(got, []string{newer}) {
			t.Errorf("%s: audit.events shows %v, want only the event within retention %s", tier, got, newer)
		}
		if inTier(t, b.pool, tier, older) != 1 {
			t.Fatalf("%s: the expired event should still be stored: the test proves nothing", tier)
		}
	}
}

// After weeks without a pass, the next one makes the leaves of today and the
// days ahead for every tier (not the missed days), and drops what expired
// meanwhile.
func TestPremakeAfterOutage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	today := midnight()
	before := today.AddDate(0, 0, -21)
	w := func(clock time.Time) *retention.Worker {
		return b.worker(t, retention.Config{Now: at(clock), PremakeDays: 2})
	}
	// A pass at that clock makes no free leaves: the free retention expires
	// them by the database's clock. They were made when that was today.
	first := runOnce(t, w(before))
	if len(first.Created) != 6 {
		t.Fatalf("first pass made %v, want 3 days of the team and enterprise tiers", first.Created)
	}
	for day := range 3 {
		exec(t, b.pool, "SELECT audit.make_leaf('free', $1::date)", before.AddDate(0, 0, day))
	}

	r := runOnce(t, w(today))
	var want []string
	for day := range 3 {
		for _, tier := range []string{"free", "team", "enterprise"} {
			want = append(want, leafOf(tier, today.AddDate(0, 0, day)))
		}
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(r.Created))
	if !slices.Equal(got, want) {
		t.Errorf("after the outage made %v, want %v", got, want)
	}
	if leafExists(t, b.pool, leafOf("team", today.AddDate(0, 0, -10))) {
		t.Error("made a leaf for a day missed during the outage")
	}
	for day := range 3 {
		if leaf := leafOf("free", before.AddDate(0, 0, day)); leafExists(t, b.pool, leaf) || !slices.Contains(r.Dropped, leaf) {
			t.Errorf("free leaf %s expired during the outage and was not dropped", leaf)
		}
		if leaf := leafOf("team", before.AddDate(0, 0, day)); !leafExists(t, b.pool, leaf) {
			t.Errorf("team leaf %s has not expired but is gone", leaf)
		}
	}
}

// Free → Enterprise: the last 7 days move to the enterprise tier; what the
// free plan had already let expire does not come back.
func TestUpgradeFreeToEnterpriseKeepsLastWeek(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	week := retentionOf["free"]
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	other := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	now := time.Now()
	expired := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-week - time.Minute)})
	kept := []string{
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-week + time.Minute)}),
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)}),
	}
	untouched := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: other, OccurredAt: now.Add(-time.Hour)})

	fixture.SetPlan(t, b.pool, org, "enterprise")
	after, err := logEvent(ctx, b.pool, org)
	if err != nil {
		t.Fatal(err)
	}
	kept = append(kept, after)
	if inTier(t, b.pool, "enterprise", after) != 1 {
		t.Fatal("an event logged after the upgrade is not in the enterprise tier")
	}

	r := runOnce(t, b.worker(t, retention.Config{}))

	if len(r.Retiered) != 1 || !r.Retiered[0].Done || r.Retiered[0].Moved != 2 {
		t.Fatalf("re-tiered %+v, want one change done with 2 events moved", r.Retiered)
	}
	for _, id := range kept {
		if inTier(t, b.pool, "enterprise", id) != 1 {
			t.Errorf("event %s of the last week is not in the enterprise tier", id)
		}
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.events_free WHERE org_id = $1", org); n != 0 {
		t.Errorf("%d of the org's events left in the free tier", n)
	}
	if inTier(t, b.pool, "enterprise", expired)+inTier(t, b.pool, "free", expired) != 0 {
		t.Error("the event the free plan had let expire is still stored")
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, kept) {
		t.Errorf("audit.events shows %v, want %v", got, kept)
	}
	if inTier(t, b.pool, "free", untouched) != 1 {
		t.Error("another free org's event was moved")
	}
	var moved int64
	var retiered *time.Time
	if err := b.pool.QueryRow(ctx, "SELECT moved_rows, retiered_at FROM audit.plan_changes WHERE org_id = $1", org).Scan(&moved, &retiered); err != nil {
		t.Fatal(err)
	}
	if moved != 2 || retiered == nil {
		t.Errorf("plan change: moved_rows %d, retiered_at %v; want 2 and set", moved, retiered)
	}

	// On enterprise now, the org's reads still stop where the free plan's
	// week started at the upgrade, not a year back: nothing older reappears.
	var floor time.Time
	if err := b.pool.QueryRow(ctx, "SELECT floor FROM audit.org_scope($1)", org).Scan(&floor); err != nil {
		t.Fatal(err)
	}
	if floor.Before(now.Add(-week - time.Minute)) {
		t.Errorf("read floor %s after the upgrade reaches further back than the free plan's week", floor)
	}
}

// Enterprise → Free: once the worker ran, nothing of the org older than 7
// days is stored anywhere, tier tables included.
func TestDowngradeEnterpriseToFreeKeepsNothingOlder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	week := retentionOf["free"]
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "enterprise"})
	now := time.Now()
	for _, age := range []time.Duration{100 * 24 * time.Hour, 30 * 24 * time.Hour, 8 * 24 * time.Hour, week + time.Minute} {
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-age)})
	}
	kept := []string{
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-week + time.Minute)}),
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)}),
	}
	fixture.SetPlan(t, b.pool, org, "free")

	r := runOnce(t, b.worker(t, retention.Config{BatchSize: 2}))

	if len(r.Retiered) != 1 || !r.Retiered[0].Done || r.Retiered[0].Moved != 2 || r.Retiered[0].Removed != 4 {
		t.Fatalf("re-tiered %+v, want one change done, 2 moved, 4 removed", r.Retiered)
	}
	var oldest time.Time
	err := b.pool.QueryRow(ctx, `SELECT min(occurred_at) FROM (
		SELECT occurred_at FROM audit.events_free WHERE org_id = $1 UNION ALL
		SELECT occurred_at FROM audit.events_team WHERE org_id = $1 UNION ALL
		SELECT occurred_at FROM audit.events_enterprise WHERE org_id = $1) e`, org).Scan(&oldest)
	if err != nil {
		t.Fatal(err)
	}
	if oldest.Before(now.Add(-week)) {
		t.Errorf("an event of %s is still stored, older than the free plan's 7 days", oldest)
	}
	for _, id := range kept {
		if inTier(t, b.pool, "free", id) != 1 {
			t.Errorf("event %s of the last week is not in the free tier", id)
		}
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, kept) {
		t.Errorf("audit.events shows %v, want %v", got, kept)
	}
	var moved, removed int64
	if err := b.pool.QueryRow(ctx, "SELECT rows_moved, rows_removed FROM audit.retention_runs WHERE id = $1", r.RunID).Scan(&moved, &removed); err != nil {
		t.Fatal(err)
	}
	if moved != 2 || removed != 4 {
		t.Errorf("run recorded %d moved, %d removed; want 2 and 4", moved, removed)
	}
}

// Events logged by the org while the worker moves its events in many small
// batches are all there afterwards, in the new tier.
func TestWritesDuringRetierSurvive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	const old = 1200
	for _, sql := range []string{
		"SELECT audit.make_leaf('free', d::date) FROM generate_series((now() AT TIME ZONE 'UTC')::date - 6, (now() AT TIME ZONE 'UTC')::date, interval '1 day') d WHERE $1::uuid IS NOT NULL",
		`INSERT INTO audit.events_free (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		 SELECT gen_random_uuid(), $1, now() - i * interval '7 minutes', 'auth.signout', 'auth', 'system', '{}'
		 FROM generate_series(1, 1200) i`,
	} {
		if _, err := b.pool.Exec(ctx, sql, org); err != nil {
			t.Fatal(err)
		}
	}
	fixture.SetPlan(t, b.pool, org, "team")

	var written atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if _, err := logEvent(ctx, b.pool, org); err != nil {
				t.Errorf("log_event during the re-tier: %v", err)
				return
			}
			written.Add(1)
		}
	})
	for written.Load() == 0 { // the writer is under way
		time.Sleep(time.Millisecond)
	}
	r := runOnce(t, b.worker(t, retention.Config{BatchSize: 40}))
	during := written.Load()
	stop.Store(true)
	wg.Wait()

	if len(r.Retiered) != 1 || r.Retiered[0].Moved != old || !r.Retiered[0].Done {
		t.Fatalf("re-tiered %+v, want %d moved and done", r.Retiered, old)
	}
	if during < 5 {
		t.Fatalf("only %d events written during the re-tier: the test proves nothing", during)
	}
	total := int(old + written.Load())
	if n := count(t, b.pool, "SELECT count(*) FROM audit.events_team WHERE org_id = $1", org); n != total {
		t.Errorf("team tier holds %d of the org's events, want %d (%d moved + %d written)", n, total, old, written.Load())
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.events WHERE org_id = $1", org); n != total {
		t.Errorf("audit.events shows %d events, want %d", n, total)
	}
}

// An event that reaches the old tier after the org was re-tiered (written by
// a transaction that read the plan before the change) is moved by the next
// pass, and shows again.
func TestLateWriteToOldTierIsMoved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Hour)})
	fixture.SetPlan(t, b.pool, org, "team")
	if r := runOnce(t, b.worker(t, retention.Config{})); len(r.Retiered) != 1 || !r.Retiered[0].Done {
		t.Fatalf("first pass re-tiered %+v, want the change done", r.Retiered)
	}
	late := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, Tier: "free"})

	r := runOnce(t, b.worker(t, retention.Config{}))

	if len(r.Retiered) != 1 || r.Retiered[0].Moved != 1 || !r.Retiered[0].Done {
		t.Errorf("second pass re-tiered %+v, want the late event moved", r.Retiered)
	}
	if inTier(t, b.pool, "team", late) != 1 || !slices.Contains(visible(t, b.pool, org), late) {
		t.Error("the late event is not in the team tier, or not visible")
	}
	if r := runOnce(t, b.worker(t, retention.Config{})); len(r.Retiered) != 0 {
		t.Errorf("third pass re-tiered %+v, want nothing left to do", r.Retiered)
	}
}

// A maintainer cannot replay an org's earlier plan change. The org went
// enterprise → free → enterprise a month ago (both re-tiered) and has logged
// on enterprise since: re-tiering the downgrade again would remove what it
// logged over a week ago and move the rest to the free tier. Only the org's
// latest change is re-tiered, and once done only while its old tier still
// holds events of the org.
func TestMaintainerCannotReplayOldPlanChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "enterprise"})
	fixture.SetPlan(t, b.pool, org, "free")
	runOnce(t, b.worker(t, retention.Config{}))
	fixture.SetPlan(t, b.pool, org, "enterprise")
	runOnce(t, b.worker(t, retention.Config{}))
	exec(t, b.pool, `UPDATE audit.plan_changes
		SET changed_at = changed_at - interval '30 days', keep_since = keep_since - interval '30 days',
		    retiered_at = retiered_at - interval '30 days'
		WHERE org_id = $1`, org)
	now := time.Now()
	kept := []string{
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-20 * 24 * time.Hour)}),
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)}),
	}
	changes := changeIDs(t, b.pool, org)
	if len(changes) != 2 {
		t.Fatalf("plan changes %v, want 2", changes)
	}

	conn := maintainer(t, b)
	for _, id := range changes {
		if _, err := conn.Exec(ctx, "SELECT * FROM audit.retier($1)", id); !hasCode(err, "AL013") {
			t.Errorf("audit.retier(%d) of a change re-tiered a month ago: %v, want SQLSTATE AL013", id, err)
		}
	}

	if n := tierCounts(t, b.pool, org); n["enterprise"] != 2 || n["free"]+n["team"] != 0 {
		t.Errorf("the org's events by tier: %v, want both still in the enterprise tier", n)
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, kept) {
		t.Errorf("audit.events shows %v, want %v", got, kept)
	}
	if r := runOnce(t, b.worker(t, retention.Config{})); len(r.Retiered) != 0 {
		t.Errorf("a pass re-tiered %+v, want nothing to do", r.Retiered)
	}
}

// Enterprise → free, a pass, → enterprise, a pass, an event, → team, a pass,
// all within a day: the org's events end in the team tier, where reads look.
// An earlier change, re-tiered and then replaced by later ones, is never
// taken up again, although its old tier (enterprise) holds the org's events.
func TestThreePlanChangesInADayEndInTheCurrentTier(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "enterprise"})
	events := []string{fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Hour)})}
	fixture.SetPlan(t, b.pool, org, "free")
	runOnce(t, b.worker(t, retention.Config{}))
	fixture.SetPlan(t, b.pool, org, "enterprise")
	runOnce(t, b.worker(t, retention.Config{}))
	id, err := logEvent(ctx, b.pool, org)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, id)
	fixture.SetPlan(t, b.pool, org, "team")

	r := runOnce(t, b.worker(t, retention.Config{}))

	changes := changeIDs(t, b.pool, org)
	if len(r.Retiered) != 1 || r.Retiered[0].ChangeID != changes[2] || r.Retiered[0].Moved != 2 || !r.Retiered[0].Done {
		t.Errorf("re-tiered %+v, want the latest change (%d) done with 2 events moved", r.Retiered, changes[2])
	}
	if n := tierCounts(t, b.pool, org); n["team"] != 2 || n["free"]+n["enterprise"] != 0 {
		t.Errorf("the org's events by tier: %v, want both in the team tier", n)
	}
	var tiers []string
	if err := b.pool.QueryRow(ctx, "SELECT tiers FROM audit.org_scope($1)", org).Scan(&tiers); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tiers, []string{"team"}) {
		t.Errorf("org_scope reads tiers %v, want [team]", tiers)
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, events) {
		t.Errorf("audit.events shows %v, want %v", got, events)
	}
}

// Two changes made before any pass (enterprise → free → enterprise): the
// latest is re-tiered, taking the earlier one with it. What the free plan
// let expire in between is removed from the enterprise tier too, the week
// it kept stays, and both changes are done.
func TestChangesMadeBetweenPassesAreRetieredAsOne(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "enterprise"})
	now := time.Now()
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-30 * 24 * time.Hour)})
	kept := []string{fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)})}
	fixture.SetPlan(t, b.pool, org, "free")
	kept = append(kept, fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org}))
	fixture.SetPlan(t, b.pool, org, "enterprise")

	r := runOnce(t, b.worker(t, retention.Config{}))

	changes := changeIDs(t, b.pool, org)
	if len(r.Retiered) != 1 || r.Retiered[0].ChangeID != changes[1] || !r.Retiered[0].Done ||
		r.Retiered[0].Moved != 1 || r.Retiered[0].Removed != 1 {
		t.Errorf("re-tiered %+v, want change %d done: 1 moved (from free), 1 removed (30 days old)", r.Retiered, changes[1])
	}
	if n := tierCounts(t, b.pool, org); n["enterprise"] != 2 || n["free"] != 0 {
		t.Errorf("the org's events by tier: %v, want the last week's 2 in the enterprise tier", n)
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, kept) {
		t.Errorf("audit.events shows %v, want %v", got, kept)
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.plan_changes WHERE org_id = $1 AND retiered_at IS NULL", org); n != 0 {
		t.Errorf("%d of the org's changes still pending", n)
	}
}

// An upgrade made 10 minutes before a free leaf expires: the org's events
// in that leaf are the new plan's now. While the change is pending the leaf
// is neither listed nor dropped; one pass re-tiers first, so the event
// survives in the enterprise tier, and then drops the leaf.
func TestUpgradeJustBeforeLeafExpiryKeepsItsEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	clock := midnight()
	expiring := clock.Add(-retentionOf["free"] - 5*time.Minute) // in the leaf that expires at clock
	leaf := leafOf("free", expiring)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	ev := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: expiring})
	fixture.SetPlan(t, b.pool, org, "enterprise")
	changed := clock.Add(-10 * time.Minute)
	exec(t, b.pool, "UPDATE audit.plan_changes SET changed_at = $2, keep_since = $3 WHERE org_id = $1",
		org, changed, changed.Add(-retentionOf["free"]))
	w := b.worker(t, retention.Config{Now: at(clock)})

	dry, err := w.DryRun(ctx)
	if err != nil || slices.Contains(dry.Dropped, leaf) {
		t.Errorf("dry run would drop %v (%v); want not %s, which the pending upgrade still needs", dry.Dropped, err, leaf)
	}
	if _, err := maintainer(t, b).Exec(ctx, "SELECT audit.drop_leaf($1, $2)", leaf, clock); !hasCode(err, "AL013") {
		t.Errorf("drop_leaf of a leaf a pending upgrade needs: %v, want SQLSTATE AL013", err)
	}

	r := runOnce(t, w)

	if inTier(t, b.pool, "enterprise", ev) != 1 || !slices.Contains(visible(t, b.pool, org), ev) {
		t.Errorf("the event the free plan still kept at the upgrade is lost (report %+v)", r)
	}
	if !slices.Contains(r.Dropped, leaf) || leafExists(t, b.pool, leaf) {
		t.Errorf("dropped %v; want %s dropped once re-tiered", r.Dropped, leaf)
	}
}

// An event already in the new tier (imported again after the plan change)
// does not stop the re-tier: the old copy goes, one copy stays, and the
// event counts as moved.
func TestRetierOfEventAlreadyInNewTier(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	now := time.Now()
	events := []string{
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-2 * time.Hour)}),
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)}),
	}
	fixture.SetPlan(t, b.pool, org, "team")
	exec(t, b.pool, "SELECT audit.make_leaf('team', (occurred_at AT TIME ZONE 'UTC')::date) FROM audit.events_free WHERE id = $1", events[1])
	exec(t, b.pool, "INSERT INTO audit.events_team SELECT * FROM audit.events_free WHERE id = $1", events[1])

	r, err := b.worker(t, retention.Config{}).RunOnce(ctx)
	if err != nil {
		t.Fatalf("pass: %v", err)
	}

	if len(r.Retiered) != 1 || !r.Retiered[0].Done || r.Retiered[0].Moved != 2 || r.Retiered[0].Removed != 0 {
		t.Errorf("re-tiered %+v, want done with 2 moved", r.Retiered)
	}
	if n := tierCounts(t, b.pool, org); n["team"] != 2 || n["free"] != 0 {
		t.Errorf("the org's events by tier: %v, want one copy of each in the team tier", n)
	}
	if got := visible(t, b.pool, org); !slices.Equal(got, events) {
		t.Errorf("audit.events shows %v, want %v", got, events)
	}
	if n := count(t, b.pool, "SELECT moved_rows FROM audit.plan_changes WHERE org_id = $1", org); n != 2 {
		t.Errorf("plan change moved_rows %d, want 2", n)
	}
}

// audit.pending_plan_changes reads only the changes that may need
// re-tiering: with thousands of changes re-tiered long ago on record, it
// reads few rows of audit.plan_changes and counts no events but the pending
// change's org's.
func TestPendingPlanChangesSkipsDoneChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const done = 5000
	exec(t, b.pool, `INSERT INTO audit.plan_changes (org_id, from_tier, to_tier, changed_at, keep_since, retiered_at, moved_rows, removed_rows)
		SELECT gen_random_uuid(), (ARRAY['free', 'team'])[i % 2 + 1], 'enterprise', now() - interval '2 days',
		       now() - interval '9 days', now() - interval '2 days', 0, 0
		FROM generate_series(1, $1) i`, done)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org})
	fixture.SetPlan(t, b.pool, org, "team")
	exec(t, b.pool, "ANALYZE audit.plan_changes")

	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// Reads so far in this transaction: of audit.plan_changes, rows; of the
	// tier tables' leaves, scans.
	const readsSQL = `SELECT
		(SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
		 WHERE relid = 'audit.plan_changes'::regclass),
		(SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_xact_user_tables
		 WHERE schemaname = 'audit' AND relname ~ '^events_(free|team|enterprise)_p')`
	var rows0, scans0, rows1, scans1 int64
	if err := tx.QueryRow(ctx, readsSQL).Scan(&rows0, &scans0); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	list, err := tx.Query(ctx, "SELECT id FROM audit.pending_plan_changes()")
	if err == nil {
		ids, err = pgx.CollectRows(list, pgx.RowTo[int64])
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, readsSQL).Scan(&rows1, &scans1); err != nil {
		t.Fatal(err)
	}

	if want := changeIDs(t, b.pool, org); !slices.Equal(ids, want) {
		t.Errorf("pending changes %v, want the org's %v", ids, want)
	}
	free := count(t, b.pool, "SELECT count(*) FROM audit.partitions WHERE tier = 'free'")
	if rows, scans := rows1-rows0, scans1-scans0; rows > 50 || scans > int64(free) {
		t.Errorf("with %d changes done long ago, read %d rows of audit.plan_changes and scanned leaves %d times; "+
			"want at most 50 rows, and one scan of each of the %d free leaves", done, rows, scans, free)
	}
}

// The re-tier step grants DELETE on a leaf inside its own transaction. A
// GRANT takes no lock on the table: while one is uncommitted, inserts into
// that very leaf and reads of it go on.
func TestGrantOnLeafBlocksNobody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "team"})
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org})
	leaf := "audit." + leafOf("team", time.Now())

	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "GRANT DELETE ON "+leaf+" TO audit_owner"); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b.pool, "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND relation = $2::regclass", pid, leaf); n != 0 {
		t.Errorf("the GRANT holds %d locks on the leaf", n)
	}
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := logEvent(quick, b.pool, org); err != nil {
		t.Errorf("insert into the leaf during the GRANT: %v", err)
	}
	var n int
	if err := b.pool.QueryRow(quick, "SELECT count(*) FROM "+leaf).Scan(&n); err != nil || n != 2 {
		t.Errorf("read of the leaf during the GRANT: %d rows, %v", n, err)
	}
}

// holdReader opens a transaction that reads the free tier table and the
// given leaf, as a long report would, and keeps it open until the returned
// function is called.
func holdReader(t *testing.T, url, leaf string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM audit.events_free; SELECT count(*) FROM audit."+leaf); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback(ctx)
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// expiredFreeLeaf stores an event ten days ago for a free org, in a leaf the
// next pass drops.
func expiredFreeLeaf(t *testing.T, pool *pgxpool.Pool) (org, leaf string) {
	t.Helper()
	org = fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})
	when := time.Now().Add(-10 * 24 * time.Hour)
	fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: when})
	return org, leafOf("free", when)
}

// Two workers started at the same moment: one runs the pass, the other sees
// the lock held and does nothing; neither fails.
func TestTwoWorkersDoNotCollide(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, leaf := expiredFreeLeaf(t, b.pool)
	// A reader keeps the winner's detach waiting, so the pass is still on
	// when the other worker tries.
	release := holdReader(t, b.url, leaf)
	time.AfterFunc(1500*time.Millisecond, release)

	workers := []*retention.Worker{
		b.worker(t, retention.Config{LockTimeout: 5 * time.Second}),
		workerAt(t, testdb.Role(t, b.url, "audit_maintainer", "audit_owner"), retention.Config{LockTimeout: 5 * time.Second}),
	}
	reports := make([]retention.Report, len(workers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			<-start
			var err error
			if reports[i], err = w.RunOnce(context.Background()); err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()

	skipped := 0
	var dropped []string
	for _, r := range reports {
		if r.Skipped {
			skipped++
		}
		dropped = append(dropped, r.Dropped...)
	}
	if skipped != 1 || !slices.Equal(dropped, []string{leaf}) {
		t.Errorf("skipped %d, dropped %v; want one worker skipped and %s dropped once", skipped, dropped, leaf)
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.retention_runs"); n != 1 {
		t.Errorf("%d runs recorded, want 1", n)
	}
}

// A reader holding the tier table and an expired leaf open makes the
// worker's detach wait, and nobody waits behind the worker: single inserts
// and reads of the tier table stay fast the whole time.
func TestReaderDoesNotMakeInsertsWaitBehindWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org, leaf := expiredFreeLeaf(t, b.pool)
	const hold = 3 * time.Second
	release := holdReader(t, b.url, leaf)
	time.AfterFunc(hold, release)

	loadCtx, stop := context.WithCancel(ctx)
	var worstInsert, worstRead atomic.Int64
	var wg sync.WaitGroup
	measure := func(worst *atomic.Int64, op func() error) {
		for loadCtx.Err() == nil {
			t0 := time.Now()
			if err := op(); err != nil {
				if loadCtx.Err() == nil {
					t.Errorf("during the pass: %v", err)
				}
				return
			}
			if d := int64(time.Since(t0)); d > worst.Load() {
				worst.Store(d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Go(func() {
		measure(&worstInsert, func() error { _, err := logEvent(loadCtx, b.pool, org); return err })
	})
	wg.Go(func() {
		measure(&worstRead, func() error {
			var n int
			return b.pool.QueryRow(loadCtx, "SELECT count(*) FROM audit.events_free WHERE org_id = $1", org).Scan(&n)
		})
	})

	started := time.Now()
	r := runOnce(t, b.worker(t, retention.Config{LockTimeout: 2 * time.Second, Retries: 10, Backoff: 100 * time.Millisecond}))
	took := time.Since(started)
	stop()
	wg.Wait()

	if !slices.Contains(r.Dropped, leaf) || leafExists(t, b.pool, leaf) {
		t.Fatalf("leaf %s not dropped once the reader ended (report %+v)", leaf, r)
	}
	if took < hold-500*time.Millisecond {
		t.Fatalf("the pass took %s: it did not wait for the %s reader, the test proves nothing", took, hold)
	}
	limit := int64(time.Second)
	if worstInsert.Load() > limit || worstRead.Load() > limit {
		t.Errorf("worst insert %s, worst read %s while the worker waited %s: someone queued behind it",
			time.Duration(worstInsert.Load()), time.Duration(worstRead.Load()), took)
	}
}

// A pass that stopped between the two transactions of a concurrent detach
// (the leaf left "detach pending"), or between the detach and the drop, is
// finished by the next pass.
func TestRecoveryFromCrashBetweenDetachAndDrop(t *testing.T) {
	t.Parallel()
	t.Run("detach pending", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, leaf := expiredFreeLeaf(t, b.pool)
		cancelDetachInSecondPhase(t, b, leaf)
		if n := count(t, b.pool, "SELECT count(*) FROM audit.partitions WHERE leaf = $1 AND detach_pending", leaf); n != 1 {
			t.Fatal("the detach is not left pending: the test proves nothing")
		}
		r := runOnce(t, b.worker(t, retention.Config{}))
		if !slices.Equal(r.Dropped, []string{leaf}) || leafExists(t, b.pool, leaf) {
			t.Errorf("dropped %v; want the pending leaf %s finished and dropped", r.Dropped, leaf)
		}
	})
	t.Run("detached, not dropped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, leaf := expiredFreeLeaf(t, b.pool)
		if _, err := b.pool.Exec(context.Background(), "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf); err != nil {
			t.Fatal(err)
		}
		dry, err := b.worker(t, retention.Config{}).DryRun(context.Background())
		if err != nil || !slices.Equal(dry.Dropped, []string{leaf}) {
			t.Fatalf("dry run would drop %v (%v), want the detached leaf", dry.Dropped, err)
		}
		r := runOnce(t, b.worker(t, retention.Config{}))
		if !slices.Equal(r.Dropped, []string{leaf}) || leafExists(t, b.pool, leaf) {
			t.Errorf("dropped %v; want the detached leaf %s dropped", r.Dropped, leaf)
		}
	})
}

// cancelDetachInSecondPhase starts DETACH ... CONCURRENTLY on leaf while a
// reader holds the tier table, waits until the detach is in its second
// transaction (waiting for the reader), and cancels it there.
func cancelDetachInSecondPhase(t *testing.T, b testBundle, leaf string) {
	t.Helper()
	ctx := context.Background()
	release := holdReader(t, b.url, leaf)
	defer release()
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pid := conn.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf+" CONCURRENTLY")
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for count(t, b.pool, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'virtualxid'", pid) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the detach never waited for the reader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.pool.Exec(ctx, "SELECT pg_cancel_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if err := <-done; !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("detach: %v, want it cancelled", err)
	}
}

// A maintainer who claims it is later than it is, by 15 days or by a
// minute, cannot drop leaves or remove events before their time; a dry run
// may look ahead.
func TestFutureClockRefusedForDestructiveSteps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "team"})
	when := time.Now().Add(-20 * 24 * time.Hour)
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: when})
	leaf := leafOf("team", when)
	fixture.SetPlan(t, b.pool, org, "free")
	change := count(t, b.pool, "SELECT max(id) FROM audit.plan_changes")
	maintainerURL := testdb.Role(t, b.url, "audit_maintainer")
	conn := maintainer(t, b)

	for _, ahead := range []time.Duration{15 * 24 * time.Hour, time.Minute} {
		future := time.Now().Add(ahead)
		w := workerAt(t, maintainerURL, retention.Config{Now: at(future)})
		if _, err := w.RunOnce(ctx); !hasCode(err, "AL011") {
			t.Errorf("pass with a clock %s ahead: %v, want SQLSTATE AL011", ahead, err)
		}
		if _, err := conn.Exec(ctx, "SELECT audit.drop_leaf($1, $2)", leaf, future); !hasCode(err, "AL011") {
			t.Errorf("drop_leaf with a clock %s ahead: %v, want SQLSTATE AL011", ahead, err)
		}
		if _, err := conn.Exec(ctx, "SELECT audit.retier($1, 10, $2)", change, future); !hasCode(err, "AL011") {
			t.Errorf("retier with a clock %s ahead: %v, want SQLSTATE AL011", ahead, err)
		}
		if !leafExists(t, b.pool, leaf) || count(t, b.pool, "SELECT count(*) FROM audit.events_team WHERE org_id = $1", org) != 1 {
			t.Fatalf("with a clock %s ahead, a step dropped or removed events", ahead)
		}
		if _, err := w.DryRun(ctx); err != nil {
			t.Errorf("dry run %s ahead: %v", ahead, err)
		}
	}

	dry, err := workerAt(t, maintainerURL, retention.Config{Now: at(time.Now().Add(15 * 24 * time.Hour))}).DryRun(ctx)
	if err != nil || !slices.Contains(dry.Dropped, leaf) {
		t.Errorf("dry run 15 days ahead: would drop %v (%v), want %s among them", dry.Dropped, err, leaf)
	}
	if _, err := conn.Exec(ctx, "SELECT audit.drop_leaf($1)", leaf); !hasCode(err, "AL013") {
		t.Errorf("drop_leaf of a leaf that has not expired: %v, want SQLSTATE AL013", err)
	}
}

// A worker role without audit_owner premakes and re-tiers but cannot
// detach, and says what it lacks.
func TestWorkerWithoutOwnerCannotDetach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, leaf := expiredFreeLeaf(t, b.pool)
	w := workerAt(t, testdb.Role(t, b.url, "audit_maintainer"), retention.Config{})
	r, err := w.RunOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "grant audit_owner to the worker's role") {
		t.Errorf("pass: %v, want an error saying the role needs audit_owner", err)
	}
	if len(r.Created) == 0 || !leafExists(t, b.pool, leaf) {
		t.Errorf("created %v, leaf %s exists %v: want leaves made and the expired one kept", r.Created, leaf, leafExists(t, b.pool, leaf))
	}
}

// Each pass is a row of audit.retention_runs, readable by audit_reader.
func TestPassIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, leaf := expiredFreeLeaf(t, b.pool)
	clock := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	r := runOnce(t, b.worker(t, retention.Config{Now: at(clock)}))

	reader, err := pgx.Connect(ctx, testdb.Role(t, b.url, "audit_reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	var got struct {
		Clock            time.Time
		Created, Dropped []string
		Errors           []string
		Duration         time.Duration
		Worker           string
	}
	err = reader.QueryRow(ctx, `SELECT clock, leaves_created, leaves_dropped, errors, duration, worker
		FROM audit.retention_runs WHERE id = $1`, r.RunID).Scan(&got.Clock, &got.Created, &got.Dropped, &got.Errors, &got.Duration, &got.Worker)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Clock.Equal(clock) || !slices.Equal(got.Created, r.Created) || len(got.Created) == 0 ||
		!slices.Equal(got.Dropped, []string{leaf}) || len(got.Errors) != 0 || got.Duration <= 0 || got.Worker == "" {
		t.Errorf("recorded %+v, want the pass %+v", got, r)
	}
}

// Run makes a pass at once and then on its schedule, until its context ends.
func TestRunOnSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.worker(t, retention.Config{Schedule: "@every 1s"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for count(t, b.pool, "SELECT count(*) FROM audit.retention_runs") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 2 passes in 15 s with a schedule of @every 1s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []retention.Config{{Schedule: "every hour"}, {PremakeDays: 91}} {
		if _, err := retention.New(nil, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// A maintainer cannot premake leaves past the database's clock plus 90
// days, whatever clock it claims, and a pass drops the empty leaves an older
// version let it make beyond that horizon, keeping one that holds events.
func TestPremakeStopsAtTheHorizon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	conn := maintainer(t, b)
	horizon := midnight().AddDate(0, 0, 90)
	future := time.Now().Add(1000 * 24 * time.Hour)
	for _, sql := range []string{"SELECT count(*) FROM audit.premake_leaves(90, $1)", "SELECT count(*) FROM audit.missing_leaves(90, $1)"} {
		if _, err := conn.Exec(ctx, sql, future); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.partitions WHERE range_start > $1", horizon); n != 0 {
		t.Errorf("premake with a clock 1000 days ahead made %d leaves past the horizon %s", n, horizon.Format(time.DateOnly))
	}
	// Nor in the past: a leaf the tier's retention expires as of the
	// database clock would only be dropped again.
	leaves := func() int {
		return count(t, b.pool, "SELECT count(*) FROM pg_inherits WHERE inhparent = ANY ('{audit.events_free,audit.events_team,audit.events_enterprise}'::regclass[])")
	}
	before := leaves()
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM audit.premake_leaves(90, $1)", time.Now().Add(-1000*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := leaves() - before; n != 0 {
		t.Errorf("premake with a clock 1000 days back made %d leaves", n)
	}

	// Far leaves as the old premake made them, one holding an event.
	var far []string
	for day := 91; day <= 93; day++ {
		start := midnight().AddDate(0, 0, day)
		far = append(far, leafOf("team", start))
		exec(t, b.pool, fmt.Sprintf("CREATE TABLE audit.%[1]s PARTITION OF audit.events_team FOR VALUES FROM ('%[2]s') TO ('%[3]s');"+
			"ALTER TABLE audit.%[1]s OWNER TO audit_owner",
			far[len(far)-1], start.Format(time.RFC3339), start.AddDate(0, 0, 1).Format(time.RFC3339)))
	}
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "team"})
	fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: midnight().AddDate(0, 0, 93).Add(time.Hour)})

	r := runOnce(t, b.worker(t, retention.Config{}))
	for _, leaf := range far[:2] {
		if leafExists(t, b.pool, leaf) || !slices.Contains(r.Dropped, leaf) {
			t.Errorf("empty leaf %s beyond the horizon was not dropped (dropped %v)", leaf, r.Dropped)
		}
	}
	if !leafExists(t, b.pool, far[2]) || !slices.Equal(r.Kept, far[2:]) {
		t.Errorf("leaf %s beyond the horizon holding an event: kept %v, exists %v", far[2], r.Kept, leafExists(t, b.pool, far[2]))
	}
}

// A worker stopped while a step waits (here on a lock) logs no error: the
// pass was interrupted, as asked, and nothing failed.
func TestStopDuringAStepLogsNoError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var logs fixture.Buffer
	w := b.worker(t, retention.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE audit.tiers IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(runCtx); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for count(t, b.pool, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%premake_leaves%'") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pass never waited on the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if s := logs.String(); strings.Contains(s, "level=ERROR") || !strings.Contains(s, `msg="retention step cut short" step="premake leaves"`) {
		t.Fatalf("logs:\n%s", s)
	}
}
