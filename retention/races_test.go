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
	b := setup(t)
	d := &detachRace{b: b, clock: midnight(), done: make(chan passResult, 1)}
	when := d.clock.Add(-retentionOf["free"] - 5*time.Minute)
	d.leaf = leafOf("free", when)
	d.org = fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	d.ev = fixture.Event(t, b.pool, fixture.EventOpts{OrgID: d.org, OccurredAt: when})
	other := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	d.other = fixture.Event(t, b.pool, fixture.EventOpts{OrgID: other, OccurredAt: when})
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
		d := startDetachRace(t)
		tx := beginPlanChange(t, d.b.pool, d.org, "enterprise", d.clock.Add(-10*time.Minute))
		d.release()
		d.waitWorker(t, "the drop waiting for the plan change", "wait_event_type = 'Lock'")
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.finish(t)
		d.wantKept(t, "enterprise")
	})
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
	for _, state := range []string{"detach pending", "detached"} {
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			clock := midnight()
			when := clock.Add(-retentionOf["free"] - 5*time.Minute)
			leaf := leafOf("free", when)
			org := fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
			ev := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: when})
			if state == "detach pending" {
				cancelDetachInSecondPhase(t, b, leaf)
			} else {
				exec(t, b.pool, "ALTER TABLE audit.events_free DETACH PARTITION audit."+leaf)
			}
			changePlan(t, b.pool, org, "team", clock.Add(-10*time.Minute))

			r := runOnce(t, b.worker(t, retention.Config{Now: at(clock)}))

			if !slices.Contains(r.Dropped, leaf) || leafExists(t, b.pool, leaf) {
				t.Errorf("dropped %v, want %s", r.Dropped, leaf)
			}
			if inTier(t, b.pool, "team", ev) != 1 || !readable(t, b.pool, org, ev) {
				t.Error("the event the upgrade keeps is lost with the half-detached leaf")
			}
		})
	}
}
