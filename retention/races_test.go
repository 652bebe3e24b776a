package retention_test

// Plan changes racing the worker (docs/retention.md, "Plan changes racing
// the worker"). Each test pauses the worker or a writer at a named point (a
// reader the detach waits for, a plan change holding its lock, a
// transaction's snapshot) and checks for that point in pg_stat_activity
// before going on: no sleep decides an outcome.

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/retention"
)

// waitUntil polls a boolean query until it is true, failing the test after
// 30 s: it waits for a state (a backend waiting), it decides nothing.
func waitUntil(t *testing.T, pool *pgxpool.Pool, what, sql string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var ok bool
		if err := pool.QueryRow(context.Background(), sql, args...).Scan(&ok); err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// roleOf is the login role of a URL: pg_stat_activity names a backend's.
func roleOf(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.User
}

// beginPlanChange changes an org's plan in a transaction it leaves open,
// dating the change `changed` (the instant the plan-change transaction
// started, for a clock injected into the past).
func beginPlanChange(t *testing.T, pool *pgxpool.Pool, org, plan string, changed time.Time) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, "UPDATE cloud.orgs SET plan = $2 WHERE id = $1", org, plan); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE audit.plan_changes p SET changed_at = $2::timestamptz, keep_since = $2::timestamptz - t.retention
		FROM audit.tiers t
		WHERE t.tier = p.from_tier AND p.id = (SELECT max(id) FROM audit.plan_changes WHERE org_id = $1)`, org, changed); err != nil {
		t.Fatal(err)
	}
	return tx
}

func changePlan(t *testing.T, pool *pgxpool.Pool, org, plan string, changed time.Time) {
	t.Helper()
	if err := beginPlanChange(t, pool, org, plan, changed).Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// readable says whether the API's reads show an event of an org: in one of
// the tier tables audit.org_scope lists, at or after its floor.
func readable(t *testing.T, pool *pgxpool.Pool, org, id string) bool {
	t.Helper()
	var floor time.Time
	var tiers []string
	if err := pool.QueryRow(context.Background(), "SELECT floor, tiers FROM audit.org_scope($1)", org).Scan(&floor, &tiers); err != nil {
		t.Fatal(err)
	}
	for _, tier := range tiers {
		if count(t, pool, "SELECT count(*) FROM audit.events_"+tier+" WHERE org_id = $1 AND id = $2 AND occurred_at >= $3", org, id, floor) == 1 {
			return true
		}
	}
	return false
}

// stored counts an event in every tier table.
func stored(t *testing.T, pool *pgxpool.Pool, id string) int {
	t.Helper()
	n := 0
	for tier := range retentionOf {
		n += inTier(t, pool, tier, id)
	}
	return n
}

// expiringFreeDay stores an event of a new free org five minutes before the
// end of the free leaf that expires at midnight today, the clock passes are
// given.
func expiringFreeDay(t *testing.T, b testBundle) (clock time.Time, org, ev, leaf string) {
	t.Helper()
	clock = midnight()
	when := clock.Add(-retentionOf["free"] - 5*time.Minute)
	org = fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	ev = fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: when})
	return clock, org, ev, leafOf("free", when)
}

// wantRetired checks that a pass dropped the leaf and that the org's event
// is readable in the tier of its plan.
func wantRetired(t *testing.T, b testBundle, r retention.Report, leaf, tier, org, ev string) {
	t.Helper()
	if !slices.Contains(r.Dropped, leaf) || leafExists(t, b.pool, leaf) {
		t.Errorf("dropped %v, want %s", r.Dropped, leaf)
	}
	if inTier(t, b.pool, tier, ev) != 1 || !readable(t, b.pool, org, ev) {
		t.Errorf("the event the org's plan keeps is not readable in the %s tier", tier)
	}
}

// detachRace is a pass whose detach of an expired free leaf waits on a
// reader: a free org has an event in that leaf, five minutes before the
// day's end, and another free org one too.
type detachRace struct {
	b           testBundle
	clock       time.Time // the pass's clock: the leaf expired at it
	org, ev     string
	other, leaf string
	release     func() // ends the reader: the detach goes on
	done        chan passResult
}

type passResult struct {
	r   retention.Report
	err error
}

func startDetachRace(t *testing.T) *detachRace {
	t.Helper()
	return startDetachRaceOn(t, setup(t))
}

func startDetachRaceOn(t *testing.T, b testBundle) *detachRace {
	t.Helper()
	d := &detachRace{b: b, done: make(chan passResult, 1)}
	d.clock, d.org, d.ev, d.leaf = expiringFreeDay(t, b)
	_, _, d.other, _ = expiringFreeDay(t, b)
	d.release = holdReader(t, b.url, d.leaf)

	w := b.worker(t, retention.Config{Now: at(d.clock), LockTimeout: 30 * time.Second})
	go func() {
		r, err := w.RunOnce(context.Background())
		d.done <- passResult{r, err}
	}()
	d.waitWorker(t, "the detach waiting for the reader", "wait_event = 'virtualxid'")
	return d
}

// waitWorker waits until the worker's backend is in the given state.
func (d *detachRace) waitWorker(t *testing.T, what, cond string) {
	t.Helper()
	waitUntil(t, d.b.pool, what, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE usename = $1 AND "+cond+")",
		roleOf(t, d.b.workerURL))
}

// finish lets the detach go on and returns the pass's report.
func (d *detachRace) finish(t *testing.T) retention.Report {
	t.Helper()
	d.release()
	res := <-d.done
	if res.err != nil {
		t.Fatalf("pass: %v (report %+v)", res.err, res.r)
	}
	if !slices.Contains(res.r.Dropped, d.leaf) || leafExists(t, d.b.pool, d.leaf) {
		t.Fatalf("dropped %v, want %s", res.r.Dropped, d.leaf)
	}
	if stored(t, d.b.pool, d.other) != 0 {
		t.Error("the event of the org still on free is stored after its leaf's drop")
	}
	return res.r
}

// upgradeDuringDetach starts a detachRace and upgrades its org to
// enterprise while the detach waits, the change dated ten minutes before the
// leaf expired: the new plan keeps the event.
func upgradeDuringDetach(t *testing.T) *detachRace {
	t.Helper()
	d := startDetachRace(t)
	changePlan(t, d.b.pool, d.org, "enterprise", d.clock.Add(-10*time.Minute))
	return d
}

// wantKept checks that the org's event is in a tier's table and readable.
func (d *detachRace) wantKept(t *testing.T, tier string) {
	t.Helper()
	if inTier(t, d.b.pool, tier, d.ev) != 1 || !readable(t, d.b.pool, d.org, d.ev) {
		t.Errorf("the event the org's plan keeps is not readable in the %s tier", tier)
	}
}

// upgradeWhileTheDropWaits upgrades the org to enterprise in a transaction
// open until the drop waits for it, then checks that the drop kept the
// org's event.
func (d *detachRace) upgradeWhileTheDropWaits(t *testing.T) {
	t.Helper()
	tx := beginPlanChange(t, d.b.pool, d.org, "enterprise", d.clock.Add(-10*time.Minute))
	d.release()
	d.waitWorker(t, "the drop waiting for the plan change", "wait_event_type = 'Lock'")
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.finish(t)
	d.wantKept(t, "enterprise")
}

// An upgrade that commits while the worker detaches the expired leaf
// holding the org's day, or whose transaction is still open when the drop
// starts: the drop keeps what the new plan keeps of that day, readable
// under the new plan.
func TestUpgradeDuringDetachKeepsTheDay(t *testing.T) {
	t.Parallel()
	t.Run("committed while the detach waits", func(t *testing.T) {
		t.Parallel()
		d := upgradeDuringDetach(t)
		d.finish(t)
		d.wantKept(t, "enterprise")
	})
	t.Run("open until the drop waits for it", func(t *testing.T) {
		t.Parallel()
		startDetachRace(t).upgradeWhileTheDropWaits(t)
	})
}

// A database or role whose transactions default to REPEATABLE READ: the
// drop would read the orgs' plans as of its first statement, before the
// plan change it waited for had committed, and drop what the new plan keeps.
// The worker's session reads committed whatever the default.
func TestUpgradeDuringDetachKeepsTheDayUnderRepeatableReadDefault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exec(t, b.pool, "ALTER ROLE "+pgx.Identifier{roleOf(t, b.workerURL)}.Sanitize()+" SET default_transaction_isolation = 'repeatable read'")
	startDetachRaceOn(t, b).upgradeWhileTheDropWaits(t)
}

// A downgrade racing the same detach, committed before the drop or after
// it: once the worker has run, nothing of the org is kept past the new,
// shorter horizon.
func TestDowngradeDuringDetachKeepsNothingOlder(t *testing.T) {
	t.Parallel()
	t.Run("before the drop", func(t *testing.T) {
		t.Parallel()
		d := upgradeDuringDetach(t)
		changePlan(t, d.b.pool, d.org, "free", d.clock.Add(-5*time.Minute))
		d.finish(t)
		if stored(t, d.b.pool, d.ev) != 0 {
			t.Error("the drop kept an event the org's plan, free again, does not keep")
		}
	})
	t.Run("after the drop", func(t *testing.T) {
		t.Parallel()
		d := upgradeDuringDetach(t)
		d.finish(t)
		if inTier(t, d.b.pool, "enterprise", d.ev) != 1 {
			t.Fatal("the drop did not keep the day for the upgrade: the test proves nothing")
		}
		fixture.SetPlan(t, d.b.pool, d.org, "free")
		runOnce(t, d.b.worker(t, retention.Config{}))
		if stored(t, d.b.pool, d.ev) != 0 {
			t.Error("an event older than the free plan's week is still stored after the downgrade's pass")
		}
	})
}

// A pass that finds the detach of an expired leaf half done (pending, or
// detached and not dropped, after a crash) keeps what an upgrade committed
// since keeps of its day.
func TestResumedDetachKeepsWhatAPlanChangeKeeps(t *testing.T) {
	t.Parallel()
	eachHalfDetach(t, func(t *testing.T, b testBundle, clock time.Time, org, ev, leaf string) {
		changePlan(t, b.pool, org, "team", clock.Add(-10*time.Minute))

		r := runOnce(t, b.worker(t, retention.Config{Now: at(clock)}))

		wantRetired(t, b, r, leaf, "team", org, ev)
	})
}

// A writer that read the old plan wrote, days after the change, to a leaf
// that a crash then left half detached; the writer ended, and the change
// was re-tiered without seeing that leaf. Its drop still keeps the event.
func TestResumedDetachKeepsWhatAChangeRetieredMeanwhileKeeps(t *testing.T) {
	t.Parallel()
	eachHalfDetach(t, func(t *testing.T, b testBundle, clock time.Time, org, ev, leaf string) {
		dayStart := clock.Add(-retentionOf["free"] - 24*time.Hour)
		changePlan(t, b.pool, org, "enterprise", dayStart.Add(-time.Hour))
		// An autovacuum or analyze of the test's tables holding a snapshot
		// would postpone the re-tier the test needs done in this pass.
		waitUntil(t, b.pool, "no other snapshot of the database", noOtherSnapshot)

		r := runOnce(t, b.worker(t, retention.Config{Now: at(clock)}))

		if len(r.Retiered) != 1 || !r.Retiered[0].Done {
			t.Fatalf("re-tiered %+v, want the change done before the drop: the test proves nothing", r.Retiered)
		}
		wantRetired(t, b, r, leaf, "enterprise", org, ev)
	})
}

// eachHalfDetach runs f, in parallel subtests, on a free org's event in the
// leaf expiring at clock, left as a crash would leave it: "detach pending",
// or "detached" and not dropped.
func eachHalfDetach(t *testing.T, f func(t *testing.T, b testBundle, clock time.Time, org, ev, leaf string)) {
	for _, state := range []string{"detach pending", "detached"} {
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			clock, org, ev, leaf := expiringFreeDay(t, b)
			if state == "detach pending" {
				cancelDetachInSecondPhase(t, b, leaf)
			} else {
				exec(t, b.pool, "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf)
			}
			f(t, b, clock, org, ev, leaf)
		})
	}
}

// A writer that read the org's plan before a change writes its event to the
// old tier after it: a REPEATABLE READ transaction whose snapshot predates
// the change, or a READ COMMITTED one that logs while the change is not
// committed yet and commits after it. Whether it commits before the
// worker's first pass or after it (a day after the change, its dates moved
// back), its event is readable as soon as it commits, and ends in the
// current plan's tier: the change is not re-tiered, and reads keep looking
// at the old tier, while such a writer may still write.
func TestStaleWriterEventIsNeverHidden(t *testing.T) {
	t.Parallel()
	for _, stale := range []string{"repeatable read", "read committed"} {
		for _, commit := range []string{"before the pass", "after the pass"} {
			t.Run(stale+", committed "+commit, func(t *testing.T) {
				t.Parallel()
				testStaleWriter(t, stale, commit == "after the pass")
			})
		}
	}
}

func testStaleWriter(t *testing.T, stale string, late bool) {
	ctx := context.Background()
	b := setup(t)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	old := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-25 * time.Hour)})
	// Today's and tomorrow's leaves exist before the writer begins, as the
	// worker keeps them: a writer that makes its day's leaf holds its tier
	// table until it commits, which the pass's premake would wait for (and
	// did, on a run just after midnight UTC; tomorrow's, should midnight
	// pass before the writer writes).
	exec(t, b.pool, "SELECT audit.premake_leaves(1)")
	writer, err := pgx.Connect(ctx, testdb.Role(t, b.url, "audit_writer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close(ctx) })

	// The writer reads the plan (free) before the change commits.
	var w pgx.Tx
	var change pgx.Tx
	if stale == "repeatable read" {
		if w, err = writer.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}); err == nil {
			_, err = w.Exec(ctx, "SELECT 1") // takes the transaction's snapshot
		}
		if err != nil {
			t.Fatal(err)
		}
		exec(t, b.pool, "UPDATE cloud.orgs SET plan = 'team' WHERE id = $1", org)
	} else {
		change = beginPlanChange(t, b.pool, org, "team", time.Now())
		if w, err = writer.Begin(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var ev string
	if err := w.QueryRow(ctx, "SELECT audit.log_event($1, 'auth.signout')", org).Scan(&ev); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		if err := change.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	commit := func() {
		t.Helper()
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if inTier(t, b.pool, "free", ev) != 1 {
			t.Fatal("the writer's event is not in the old tier: the test proves nothing")
		}
		if !readable(t, b.pool, org, ev) {
			t.Error("the writer's event is hidden once committed")
		}
	}
	if !late {
		commit()
	}

	r := runOnce(t, b.worker(t, retention.Config{}))
	if !readable(t, b.pool, org, old) {
		t.Error("the org's older event is hidden after the first pass")
	}
	if late {
		if len(r.Retiered) != 0 {
			t.Errorf("re-tiered %+v while a writer that read the old plan is open", r.Retiered)
		}
		commit()
		exec(t, b.pool, `UPDATE audit.plan_changes SET changed_at = changed_at - interval '1 day',
			keep_since = keep_since - interval '1 day' WHERE org_id = $1`, org)
	}
	// Any snapshot of the database older than the change (an autovacuum or
	// analyze of the test's tables) also postpones the re-tier: once none
	// is left, a pass does it.
	if count(t, b.pool, "SELECT count(*) FROM audit.plan_changes WHERE org_id = $1 AND retiered_at IS NULL", org) != 0 {
		waitUntil(t, b.pool, "no other snapshot of the database", noOtherSnapshot)
		runOnce(t, b.worker(t, retention.Config{}))
	}

	for _, id := range []string{old, ev} {
		if inTier(t, b.pool, "team", id) != 1 || !readable(t, b.pool, org, id) {
			t.Errorf("event %s is not readable in the team tier after the passes", id)
		}
	}
	if n := count(t, b.pool, "SELECT count(*) FROM audit.plan_changes WHERE org_id = $1 AND retiered_at IS NULL", org); n != 0 {
		t.Error("the plan change is still pending after the passes")
	}
}

// A plan change not ready to re-tier (a writer that read the old plan is
// still open, or has just ended) holds an expired leaf of its old tier back
// for one pass at most: the next pass retires it, the drop keeping what the
// org's plan keeps, or the re-tier having moved it first.
func TestPendingChangeHoldsALeafOnePassAtMost(t *testing.T) {
	t.Parallel()
	for _, writer := range []string{"still open", "ended"} {
		t.Run("writer "+writer, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			b := setup(t)
			clock, org, ev, leaf := expiringFreeDay(t, b)
			conn, err := pgx.Connect(ctx, testdb.Role(t, b.url, "audit_writer"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			stale, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
			if err == nil {
				_, err = stale.Exec(ctx, "SELECT 1") // a snapshot older than the change
			}
			if err != nil {
				t.Fatal(err)
			}
			changePlan(t, b.pool, org, "enterprise", clock.Add(-10*time.Minute))
			w := b.worker(t, retention.Config{Now: at(clock)})
			readerPool := testdb.Pool(t, testdb.Role(t, b.url, "audit_reader"))
			heldBy := func(when string, want string) {
				t.Helper()
				hs, err := retention.Holdups(ctx, readerPool, &clock)
				if err != nil || len(hs) != 1 || hs[0].Leaf != leaf || hs[0].HeldBy != want {
					t.Errorf("%s: holdups %+v (%v), want %s held by %s", when, hs, err, leaf, want)
				}
			}

			heldBy("before the first pass", "plan change")
			first := runOnce(t, w)
			if slices.Contains(first.Dropped, leaf) || len(first.Retiered) != 0 {
				t.Fatalf("first pass dropped %v, re-tiered %+v: want the leaf held for the change not ready", first.Dropped, first.Retiered)
			}
			heldBy("after the first pass", "nothing")
			if !readable(t, b.pool, org, ev) {
				t.Error("the event is hidden while its leaf is held")
			}
			if writer == "ended" {
				stale.Rollback(ctx)
			}

			wantRetired(t, b, runOnce(t, w), leaf, "enterprise", org, ev)
		})
	}
}

// A detach left pending by a transaction holding the tier table is reported
// with that transaction's pid, to audit_reader; once it ends, the next pass
// retires the leaf and nothing is reported.
func TestHoldupsNameTheTransactionsADetachWaitsFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, leaf := expiredFreeLeaf(t, b.pool)
	release := holdReader(t, b.url, leaf)
	var reader int32
	if err := b.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&reader); err != nil {
		t.Fatal(err)
	}
	if _, err := b.worker(t, retention.Config{DetachWait: 200 * time.Millisecond, Retries: 1}).RunOnce(ctx); err == nil {
		t.Fatal("the pass dropped the leaf a reader holds: the test proves nothing")
	}
	readerPool := testdb.Pool(t, testdb.Role(t, b.url, "audit_reader"))

	hs, err := retention.Holdups(ctx, readerPool, nil)
	if err != nil || len(hs) != 1 || hs[0].Leaf != leaf || hs[0].State != "detach pending" ||
		hs[0].HeldBy != "transactions" || !slices.Equal(hs[0].PIDs, []int32{reader}) {
		t.Errorf("holdups %+v (%v), want %s pending, held by the reader (pid %d)", hs, err, leaf, reader)
	}

	release()
	runOnce(t, b.worker(t, retention.Config{}))
	if hs, err := retention.Holdups(ctx, readerPool, nil); err != nil || len(hs) != 0 {
		t.Errorf("holdups %+v (%v) once the reader ended, want none", hs, err)
	}
}

// Only the sessions of this database can read its plans or write its
// events: a transaction left open in another database of the cluster, older
// than the change, does not postpone the re-tier.
func TestTransactionInAnotherDatabaseDoesNotPostponeRetier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	other, err := pgx.Connect(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, "SELECT pg_current_xact_id()")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	ev := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org})
	fixture.SetPlan(t, b.pool, org, "team")

	r := runOnce(t, b.worker(t, retention.Config{}))

	if len(r.Retiered) != 1 || !r.Retiered[0].Done || inTier(t, b.pool, "team", ev) != 1 {
		t.Errorf("re-tiered %+v while another database has an older transaction open, want the change done", r.Retiered)
	}
}

// The fence is a transaction id taken after looking at the sessions: it is
// refused in a transaction that has one already.
func TestFenceRefusedInATransactionThatHasWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := maintainer(t, setup(t))
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT audit.fence_plan_changes()"); !hasCode(err, "AL013") {
		t.Errorf("fence in a transaction with an id: %v, want SQLSTATE AL013", err)
	}
}

// An event in a leaf detached and not dropped yet is in no tier table, but
// not removed: the drop copies it out if a plan change committed meanwhile
// keeps it. The sealer's pruning leaves its seal alone until then, so the
// event kept is sealed once, at its own seq, and never sealed again.
func TestKeptEventKeepsItsSeal(t *testing.T) {
	t.Parallel()
	eachHalfDetach(t, func(t *testing.T, b testBundle, clock time.Time, org, ev, leaf string) {
		exec(t, b.pool, `SELECT audit.record_seals('test', NULL, ARRAY[org_id], '{1}', ARRAY[occurred_at], ARRAY[id], ARRAY[sha256('e')], NULL)
			FROM audit.`+leaf+` WHERE id = $1`, ev)
		exec(t, b.pool, "SELECT count(*) FROM audit.prune_seals(100)")
		changePlan(t, b.pool, org, "enterprise", clock.Add(-10*time.Minute))

		wantRetired(t, b, runOnce(t, b.worker(t, retention.Config{Now: at(clock)})), leaf, "enterprise", org, ev)
		if n := count(t, b.pool, "SELECT count(*) FROM audit.sealed_events WHERE org_id = $1 AND seq = 1 AND id = $2", org, ev); n != 1 {
			t.Error("the event the drop kept lost its seal: the sealer would seal it again, at a new seq")
		}
	})
}

// The drop of a detached leaf looks in it for the orgs that left its tier
// since its day began or whose change is not re-tiered yet, not for every
// org that ever left the tier: that list only grows, and the drop holds plan
// changes off while it looks (about 80 us an org, 5 s with 60,000 orgs).
func TestDropLooksOnlyForOrgsThatMayHaveEventsInTheLeaf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	clock, org, _, leaf := expiringFreeDay(t, b)
	exec(t, b.pool, `WITH o AS (INSERT INTO cloud.orgs (name, plan) SELECT 'left free long ago ' || g, 'enterprise' FROM generate_series(1, 500) g RETURNING id)
		INSERT INTO audit.plan_changes (org_id, from_tier, to_tier, changed_at, keep_since, retiered_at, moved_rows, removed_rows)
		SELECT o.id, 'free', 'enterprise', $1::timestamptz - interval '60 days', $1::timestamptz - interval '67 days', $1::timestamptz - interval '60 days', 0, 0 FROM o`, clock)
	exec(t, b.pool, "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf)
	changePlan(t, b.pool, org, "enterprise", clock.Add(-10*time.Minute))

	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var kept, scans int64
	if err := tx.QueryRow(ctx, "SELECT audit.keep_from_leaf($1, 'free', $2, $3)", leaf, clock.Add(-8*24*time.Hour), clock).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = $1::regclass",
		"audit."+leaf).Scan(&scans); err != nil {
		t.Fatal(err)
	}
	if kept != 1 || scans >= 100 {
		t.Errorf("kept %d events in %d scans of the leaf, want the upgraded org's 1 in a few, not one per org that left free", kept, scans)
	}
}

// By hand too, a drop that would read the orgs' plans from a snapshot taken
// before it waited for plan changes is refused, not run.
func TestDropRefusedOutsideReadCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, leaf := expiredFreeLeaf(t, b.pool)
	exec(t, b.pool, "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf)
	tx, err := maintainer(t, b).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT audit.drop_leaf($1)", leaf); !hasCode(err, "AL013") {
		t.Errorf("drop in a REPEATABLE READ transaction: %v, want SQLSTATE AL013", err)
	}
	if !leafExists(t, b.pool, leaf) {
		t.Error("the leaf was dropped")
	}
}

// noOtherSnapshot is true when no other session of the test's database
// holds a snapshot, which would postpone a re-tier.
const noOtherSnapshot = `SELECT NOT EXISTS (SELECT FROM pg_stat_activity
	WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL)`
