package sealer_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/importer"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/internal/verify"
	"github.com/auditlog/auditlog/retention"
	"github.com/auditlog/auditlog/sealer"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(helperURL); url != "" {
		os.Exit(runHelperSealer(url))
	}
	testdb.Main(m)
}

// record logs one event of org in its own transaction and returns its id.
func record(t testing.TB, pool *pgxpool.Pool, org string) string {
	t.Helper()
	var id string
	if err := pool.QueryRow(context.Background(), "SELECT audit.log_event($1, 'cluster.token_rotated', 'c1')", org).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// sealed lists org's sealed event ids in seq order.
func sealed(t testing.TB, pool *pgxpool.Pool, org string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT event_id::text FROM audit.seals WHERE org_id = $1 ORDER BY seq", org)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkChain fails the test unless org's chain verifies with n links.
func checkChain(t testing.TB, pool *pgxpool.Pool, org string, n int64) {
	t.Helper()
	res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
	if err != nil {
		t.Fatal(err)
	}
	if res.Break != nil || res.Verified != n || res.Unsealed != 0 {
		t.Fatalf("chain of org %s: break %v, %d verified, %d unsealed; want %d verified", org, res.Break, res.Verified, res.Unsealed, n)
	}
}

// sealingOrg is a new database with an org and a sealer running.
func sealingOrg(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	sealtest.Start(t, url, sealer.Config{})
	return pool, org
}

func TestSealsInCommitOrder(t *testing.T) {
	t.Parallel()
	pool, org := sealingOrg(t)
	ctx := context.Background()
	// Today's leaf exists, as the retention worker makes it: otherwise the
	// second writer would wait for the first one's new leaf.
	if _, err := pool.Exec(ctx, "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}

	// A records first and commits last.
	late, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	var lateID, lateXid string
	if err := late.QueryRow(ctx, "SELECT audit.log_event($1, 'cluster.deleted', 'c1', '{\"name\": \"prod\"}'), pg_current_xact_id()::text", org).Scan(&lateID, &lateXid); err != nil {
		t.Fatal(err)
	}
	early := record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 1)
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	after := record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 3)

	got := sealed(t, pool, org)
	want := []string{early, lateID, after}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("seal order %v, want commit order %v", got, want)
	}
	checkChain(t, pool, org, 3)
	// The seal keeps its event's transaction id, which the feed asks the
	// reader's snapshot about (internal/store's TestFeedWaitsForARunningTransaction).
	var xid *string
	if err := pool.QueryRow(ctx, "SELECT xid::text FROM audit.seals WHERE event_id = $1", lateID).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if xid == nil || *xid != lateXid {
		t.Errorf("seal of the late event: transaction %v, want %s", xid, lateXid)
	}
}

// A rolled-back event is never sealed, nor one recorded in a savepoint
// rolled back inside a transaction that commits (the events around it are,
// in their order).
func TestRolledBackEventIsNeverSealed(t *testing.T) {
	t.Parallel()
	pool, org := sealingOrg(t)
	ctx := context.Background()

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The first transaction rolls back; in the second, the second event's
	// savepoint does.
	ids := make([]string, 4)
	for i, sql := range []string{"", "ROLLBACK; BEGIN", "SAVEPOINT s", "ROLLBACK TO SAVEPOINT s"} {
		if sql != "" {
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.QueryRow(ctx, "SELECT audit.log_event($1, 'cluster.token_rotated', 'c1')", org).Scan(&ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sealtest.WaitSealed(t, pool, org, 2)
	if got := sealed(t, pool, org); !slices.Equal(got, []string{ids[1], ids[3]}) {
		t.Fatalf("sealed %v, want %s and %s, not %s (rolled back) nor %s (its savepoint rolled back)", got, ids[1], ids[3], ids[0], ids[2])
	}
	checkChain(t, pool, org, 2)
}

func TestFirstPassSealsEventsRecordedBeforeTheSealer(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"})
	// Events of several days and tiers, stored before any sealer ran.
	for i := range 5 {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Duration(i) * 24 * time.Hour)})
	}
	sealtest.Start(t, url, sealer.Config{})
	sealtest.WaitSealed(t, pool, org, 5)
	record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 6)
	checkChain(t, pool, org, 6)
}

// A sealer that stops confirms to its slot what it sealed, once flushed,
// so that the next one is not sent those transactions again.
func TestStoppingSealerConfirmsWhatItSealed(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	stop := sealtest.Start(t, url, sealer.Config{})
	for range 3 {
		record(t, pool, org)
	}
	sealtest.WaitSealed(t, pool, org, 3)
	stop()
	// The WAL sender applies the last status update on its own time; with
	// no sealer running, nothing but that update moves the slot.
	var confirmed, sealed string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var caughtUp bool
		err := pool.QueryRow(context.Background(), `
			SELECT s.confirmed_flush_lsn::text, p.lsn::text, s.confirmed_flush_lsn >= p.lsn
			FROM pg_replication_slots s JOIN audit.sealer_progress p ON p.slot = s.slot_name`).Scan(&confirmed, &sealed, &caughtUp)
		if err != nil {
			t.Fatal(err)
		}
		if caughtUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed to %s after the sealer stopped; it had sealed to %s", confirmed, sealed)
		}
	}
}

func TestStandbySealerTakesOver(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	key := sealtest.Key(t)
	stopFirst := sealtest.Start(t, url, sealer.Config{Key: key})
	// The second waits on the lock: its Start returns at once, the slot
	// being ready already.
	sealtest.Start(t, url, sealer.Config{Key: key})
	record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 1)
	stopFirst()
	record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 2)
	checkChain(t, pool, org, 2)
}

func TestSealsKeepSeqWhenOrgIsRetiered(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})
	sealtest.Start(t, url, sealer.Config{})
	record(t, pool, org)
	record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 2)
	before := sealed(t, pool, org)

	ctx := context.Background()
	fixture.SetPlan(t, pool, org, "team")
	w, err := retention.New(pool, retention.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := w.RunOnce(ctx); err != nil || rep.Moved() != 2 {
		t.Fatalf("retention pass: %+v, %v; want 2 rows moved", rep, err)
	}
	third := record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 3)
	got := sealed(t, pool, org)
	if len(got) != 3 || got[0] != before[0] || got[1] != before[1] || got[2] != third {
		t.Fatalf("after re-tiering: sealed %v, want %v then %s", got, before, third)
	}
	checkChain(t, pool, org, 3)
}

// Retention removes events; the sealer prunes their seals and signs the
// last one removed, so the chain still verifies from the first kept event,
// and goes on.
func TestPruningKeepsTheChainVerifiable(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})
	for _, age := range []time.Duration{10 * 24 * time.Hour, 9 * 24 * time.Hour, time.Hour, time.Minute} {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-age)})
	}
	sealtest.Start(t, url, sealer.Config{PruneEvery: 50 * time.Millisecond})
	sealtest.WaitSealed(t, pool, org, 4)
	w, err := retention.New(pool, retention.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := w.RunOnce(context.Background()); err != nil || len(rep.Dropped) == 0 {
		t.Fatalf("retention pass: %+v, %v; want expired leaves dropped", rep, err)
	}
	sealtest.WaitFor(t, pool, "the seals of removed events pruned", func(ctx context.Context) (bool, error) {
		var first int64
		err := pool.QueryRow(ctx, "SELECT coalesce(min(seq), 0) FROM audit.seals WHERE org_id = $1", org).Scan(&first)
		return first == 3, err
	})
	record(t, pool, org)
	sealtest.WaitSealed(t, pool, org, 5)
	res, err := verify.Org(context.Background(), pool, org, nil, verify.DefaultSealerWait)
	if err != nil || res.Break != nil || res.First != 3 || res.Last != 5 || res.Verified != 3 || res.Checkpoints == 0 {
		t.Fatalf("after pruning: %+v, %v; want seq 3 to 5 verified from the removal checkpoint", res, err)
	}
	// An export still carries each kept event's prev_hash, the first one's
	// from the seal pruned before it (its removal checkpoint).
	want := map[int64]string{} // by seq: the hash of the link before
	rows, err := pool.Query(context.Background(), `
		SELECT seq + 1, encode(hash, 'hex') FROM audit.checkpoints WHERE org_id = $1 AND kind = 'removal'
		UNION ALL SELECT seq + 1, encode(hash, 'hex') FROM audit.seals WHERE org_id = $1`, org)
	if err != nil {
		t.Fatal(err)
	}
	var next int64
	var hash string
	if _, err := pgx.ForEachRow(rows, []any{&next, &hash}, func() error { want[next] = hash; return nil }); err != nil {
		t.Fatal(err)
	}
	exported := 0
	err = exportAll(t, pool, org, func(e store.ExportedEvent) error {
		exported++
		if e.Seq == nil || e.PrevHash == nil || *e.PrevHash != want[*e.Seq] {
			t.Errorf("event %s exported without the prev_hash of its seal: %+v; want %v", e.ID, e, want)
		}
		return nil
	})
	if err != nil || exported != 3 {
		t.Fatalf("exported %d events, %v; want 3", exported, err)
	}
}

// exportAll streams org's events as its NDJSON export does.
func exportAll(t testing.TB, pool *pgxpool.Pool, org string, each func(store.ExportedEvent) error) error {
	t.Helper()
	st := store.New(pool)
	sc, err := st.Scope(context.Background(), org, nil)
	if err != nil {
		return err
	}
	now := time.Now()
	return st.Stream(context.Background(), store.Query{OrgID: org, Tiers: sc.Tiers, Since: sc.Floor,
		Before: store.Position{OccurredAt: now.Add(time.Hour), ID: store.MinID}, Now: now}, each)
}

// Bulk-imported events are sealed too, once their batch commits.
func TestImportedEventsAreSealed(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	sealtest.Start(t, url, sealer.Config{})
	var input strings.Builder
	for i := range 50 {
		fmt.Fprintf(&input, `{"org_id": %q, "occurred_at": %q, "action": "auth.signout"}`+"\n",
			org, time.Now().Add(-time.Duration(i)*time.Hour).UTC().Format(time.RFC3339Nano))
	}
	conn, err := pgx.Connect(context.Background(), testdb.Role(t, url, "audit_maintainer"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rep, err := importer.Import(context.Background(), conn, strings.NewReader(input.String()), importer.Options{BatchSize: 20})
	if err != nil || rep.Loaded != 50 {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	sealtest.WaitSealed(t, pool, org, 50)
	checkChain(t, pool, org, 50)
}

// Pruning deletes the checkpoints verification no longer needs: those
// before the last removal checkpoint of their org. It prunes only orgs with
// seals of removed events, however many others there are, each as far as
// its events are gone, in batches smaller than one org's share.
func TestPruningKeepsOnlyTheCheckpointsStillNeeded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	now := time.Now()
	old := func(org string, days time.Duration) {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-days * 24 * time.Hour)})
	}
	a := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})       // prunes 3 of 4, over two days of checkpoints
	f := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})       // prunes 1 of 2
	e := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"}) // keeps its old events
	old(a, 10)
	old(f, 10)
	fixture.Event(t, pool, fixture.EventOpts{OrgID: f})
	old(e, 10)
	old(e, 9)
	var others []string // nothing to prune
	for range 40 {
		o := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})
		fixture.Event(t, pool, fixture.EventOpts{OrgID: o})
		others = append(others, o)
	}
	var days atomic.Int64 // the sealer's clock runs this many days ahead
	sealtest.Start(t, url, sealer.Config{PruneEvery: 50 * time.Millisecond, CheckpointEvery: 50 * time.Millisecond, PruneBatch: 2,
		Now: func() time.Time { return time.Now().Add(time.Duration(days.Load()) * 24 * time.Hour) }})
	sealtest.WaitCheckpoint(t, pool, a, 1)
	old(a, 9)
	fixture.Event(t, pool, fixture.EventOpts{OrgID: a, OccurredAt: now.Add(-9*24*time.Hour + time.Hour)})
	record(t, pool, a)
	days.Store(1)
	sealtest.WaitCheckpoint(t, pool, a, 4)

	w, err := retention.New(pool, retention.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := w.RunOnce(ctx); err != nil || len(rep.Dropped) == 0 {
		t.Fatalf("retention pass: %+v, %v; want expired leaves dropped", rep, err)
	}
	first := func(org string) (seq int64) {
		if err := pool.QueryRow(ctx, "SELECT coalesce(min(seq), 0) FROM audit.seals WHERE org_id = $1", org).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	sealtest.WaitFor(t, pool, "the seals of removed events pruned", func(context.Context) (bool, error) {
		return first(a) == 4 && first(f) == 2, nil
	})

	checkpoints := func(org string) []string {
		cps, err := store.New(pool).Checkpoints(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		rows, err := pool.Query(ctx, "SELECT kind || ' ' || seq FROM audit.checkpoints WHERE org_id = $1 ORDER BY seq, kind", org)
		if err == nil {
			all, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != len(all) {
			t.Errorf("org %s: the API lists %d of its %d checkpoints %v: it lists all that are kept", org, len(cps), len(all), all)
		}
		return all
	}
	for org, want := range map[string][]string{a: {"removal 3", "day 4"}, f: {"removal 1", "day 2"}, e: {"day 2"}} {
		if got := checkpoints(org); !slices.Equal(got, want) {
			t.Errorf("org %s keeps checkpoints %v, want %v", org, got, want)
		}
	}
	for org, n := range map[string]int64{a: 1, f: 1, e: 2} {
		checkChain(t, pool, org, n)
	}
	if first(e) != 1 {
		t.Errorf("org %s's seals were pruned from seq %d: its plan keeps its events", e, first(e))
	}
	for _, o := range others {
		if got := checkpoints(o); first(o) != 1 || !slices.Equal(got, []string{"day 1"}) {
			t.Errorf("org %s with nothing to prune: first seal %d, checkpoints %v", o, first(o), got)
		}
	}
}
