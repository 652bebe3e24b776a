package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/retention"
)

// loadDaySQL fills one tier's leaf for a UTC day with $3 events spread over
// the day, from 1000 orgs.
const loadDaySQL = `
	INSERT INTO audit.events_%s (id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_email, metadata)
	SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad((i %% 1000)::text, 12, '0'))::uuid,
	       $1::date::timestamp AT TIME ZONE 'UTC' + i * ($2::float8 / $3) * interval '1 second',
	       'cluster.created', 'cluster', 'cl-' || i, 'user', 'bench@example.com', '{"name": "prod-eu-1"}'
	FROM generate_series(0, $3 - 1) i`

// loadDay makes the tier's leaf for day and fills it with n events.
func loadDay(ctx context.Context, conn *pgx.Conn, tier string, day time.Time, n int) error {
	if _, err := conn.Exec(ctx, "SELECT audit.make_leaf($1, $2::date)", tier, day); err != nil {
		return fmt.Errorf("make leaf %s %s: %w", tier, day.Format(time.DateOnly), err)
	}
	return fillDay(ctx, conn, tier, day, n)
}

// fillDay fills the tier's existing leaf for day with n events.
func fillDay(ctx context.Context, conn *pgx.Conn, tier string, day time.Time, n int) error {
	if _, err := conn.Exec(ctx, fmt.Sprintf(loadDaySQL, tier), day, 86400, n); err != nil {
		return fmt.Errorf("load %s %s: %w", tier, day.Format(time.DateOnly), err)
	}
	return nil
}

// tierRetention is each tier's retention in days, as in audit.tiers.
var tierRetention = []struct {
	name string
	days int
}{{"free", 7}, {"team", 30}, {"enterprise", 365}}

// writerOrgs makes one org per tier for the writers of logEvents.
func writerOrgs(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	var orgs []string
	for _, t := range tierRetention {
		var org string
		if err := conn.QueryRow(ctx, "INSERT INTO cloud.orgs (name, plan) VALUES ('bench', $1) RETURNING id::text", t.name).Scan(&org); err != nil {
			return nil, err
		}
		orgs = append(orgs, org)
	}
	return orgs, nil
}

// logEvents is a runClients operation recording one event per call, in its
// own transaction, for the orgs in turn.
func logEvents(orgs []string) func(ctx context.Context, c *pgx.Conn, i int) error {
	return func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, "SELECT audit.log_event(org_id => $1, action => 'cluster.created', target_id => $2, metadata => $3)",
			orgs[i%len(orgs)], fmt.Sprint("cl-", i), `{"name": "prod-eu-1"}`)
		return err
	}
}

// newWorker returns a retention worker on url; stop closes its pool.
func newWorker(ctx context.Context, url string, cfg retention.Config) (w *retention.Worker, stop func(), err error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	if w, err = retention.New(pool, cfg); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return w, pool.Close, nil
}

// benchRetire compares retiring one day of events (1M at scale 1) by
// dropping its leaf, as the retention worker does (concurrent detach, then
// DROP TABLE), with a DELETE of the same number of rows from a leaf of the
// same size. The DELETE's cost does not even include the VACUUM it leaves
// behind.
func benchRetire(ctx context.Context, b *bench) ([]row, error) {
	url, conn, err := b.freshConn(ctx, "auditlog_bench_retire")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	w, stop, err := newWorker(ctx, url, retention.Config{Logger: b.logger})
	if err != nil {
		return nil, err
	}
	defer stop()
	if _, err := w.RunOnce(ctx); err != nil { // premake, so the timed pass has nothing else to do
		return nil, err
	}

	n := max(1000, int(1_000_000*b.scale))
	today := time.Now().UTC().Truncate(24 * time.Hour)
	expired := today.AddDate(0, 0, -20) // past the free tier's 7 days: the pass drops it
	kept := today.AddDate(0, 0, -2)     // within the team tier's 30 days: deleted by hand
	b.logger.Info("loading two days of events", "events_per_day", n)
	if err := loadDay(ctx, conn, "free", expired, n); err != nil {
		return nil, err
	}
	if err := loadDay(ctx, conn, "team", kept, n); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE audit.events_free, audit.events_team"); err != nil {
		return nil, err
	}

	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}
	// The baseline needs to get past the immutability trigger: as a
	// superuser, with triggers off for the session (which also spares the
	// DELETE the trigger's cost: the comparison is in its favour).
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return nil, err
	}
	t0 := time.Now()
	_, err = conn.Exec(ctx, "DELETE FROM audit.events_team WHERE occurred_at >= $1 AND occurred_at < $1 + interval '1 day'", kept)
	if err != nil {
		return nil, fmt.Errorf("delete a day: %w", err)
	}
	deleteTook := time.Since(t0)
	if _, err := conn.Exec(ctx, "RESET session_replication_role"); err != nil {
		return nil, err
	}

	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}
	t0 = time.Now()
	r, err := w.RunOnce(ctx)
	if err != nil {
		return nil, err
	}
	dropTook := time.Since(t0)
	if len(r.Dropped) != 1 {
		return nil, fmt.Errorf("the pass dropped %v, want the one expired leaf", r.Dropped)
	}
	return []row{{
		benchmark: fmt.Sprintf("retire one day of %d events: retention pass (detach + drop) vs DELETE", n),
		measured:  dropTook.Round(time.Millisecond).String(),
		baseline:  deleteTook.Round(time.Millisecond).String(),
		ratio:     dropTook.Seconds() / deleteTook.Seconds(),
	}}, nil
}

// benchRetentionStall measures the worst single-insert latency seen by 4
// writers calling audit.log_event while retention passes make and drop
// leaves back to back: first alone, then with a reader that keeps the tier
// tables open for 2 s at a time, which every detach must wait for; against
// the same writers with no worker.
// The passes run on a clock stepping a day per pass through a prepared past,
// so each one has leaves to make and expired leaves to drop.
func benchRetentionStall(ctx context.Context, b *bench) ([]row, error) {
	url, conn, err := b.freshConn(ctx, "auditlog_bench_retention_stall")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	orgs, err := writerOrgs(ctx, conn)
	if err != nil {
		return nil, err
	}
	// steps passes at most; pass k acts at start+k days and drops, in each
	// tier, the leaf that expires that day.
	steps := max(20, int(100*b.scale))
	today := time.Now().UTC().Truncate(24 * time.Hour)
	start := today.AddDate(0, 0, -steps-5)
	perLeaf := max(100, int(2000*b.scale))
	b.logger.Info("preparing expired leaves", "leaves", 3*steps, "events_per_leaf", perLeaf)
	for _, t := range tierRetention {
		for k := range steps {
			if err := loadDay(ctx, conn, t.name, start.AddDate(0, 0, k-t.days-1), perLeaf); err != nil {
				return nil, err
			}
		}
	}
	for _, sql := range []string{"SELECT audit.make_leaf(t.tier, current_date) FROM audit.tiers t", "VACUUM ANALYZE", "CHECKPOINT"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, err
		}
	}

	const clients = 4
	insert := logEvents(orgs)
	phase := b.duration / 2
	quiet, err := runClients(ctx, url, clients, phase, nil, insert)
	if err != nil {
		return nil, fmt.Errorf("writers alone: %w", err)
	}

	k := 0 // passes so far; pass k acts at start + k days
	w, stopWorker, err := newWorker(ctx, url, retention.Config{Logger: b.logger, Now: func() time.Time { return start.AddDate(0, 0, k) }})
	if err != nil {
		return nil, err
	}
	defer stopWorker()
	// during runs the writers while passes follow each other, with long
	// readers if asked, and returns their row.
	during := func(readers bool) (row, error) {
		phaseCtx, stopPhase := context.WithCancel(ctx)
		defer stopPhase()
		var wg sync.WaitGroup
		var made, dropped, passes int
		var passErr, readerErr error
		if readers {
			wg.Go(func() { readerErr = holdReaders(phaseCtx, url, 2*time.Second) })
		}
		// The phase without readers leaves a few days for the one with them,
		// whose passes are slow (each detach waits for a reader).
		last := steps
		if !readers {
			last = steps - 5
		}
		wg.Go(func() {
			for ; k < last && phaseCtx.Err() == nil; k++ {
				r, err := w.RunOnce(phaseCtx)
				if err != nil && phaseCtx.Err() == nil {
					passErr = err
					return
				}
				made, dropped, passes = made+len(r.Created), dropped+len(r.Dropped), passes+1
			}
		})
		busy, err := runClients(ctx, url, clients, phase, nil, insert)
		stopPhase()
		wg.Wait()
		if err == nil && passErr != nil {
			err = fmt.Errorf("retention passes: %w", passErr)
		}
		if err == nil && readerErr != nil {
			err = fmt.Errorf("reader: %w", readerErr)
		}
		if err == nil && dropped == 0 {
			err = fmt.Errorf("no leaf dropped during the writers' phase (%d passes): lengthen -duration", passes)
		}
		what := "no readers"
		if readers {
			what = "2 s readers"
		}
		worst := busy.max()
		return row{
			benchmark: fmt.Sprintf("worst log_event latency, %d writers, during %d retention passes (%d leaves made, %d dropped; %s)",
				clients, passes, made, dropped, what),
			measured: fmt.Sprintf("%s (p99 %s)", worst.Round(100*time.Microsecond), busy.quantile(0.99).Round(10*time.Microsecond)),
			baseline: fmt.Sprintf("%s (p99 %s)", quiet.max().Round(100*time.Microsecond), quiet.quantile(0.99).Round(10*time.Microsecond)),
			ratio:    worst.Seconds() / quiet.max().Seconds(),
			goal:     "< 100ms",
			met:      ptr(worst < 100*time.Millisecond),
		}, err
	}
	var rows []row
	for _, readers := range []bool{false, true} {
		r, err := during(readers)
		if err != nil {
			return nil, fmt.Errorf("writers during retention: %w", err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// holdReaders keeps a transaction open that has read every tier table, for
// hold at a time, until ctx ends: the long report a concurrent detach must
// wait for.
func holdReaders(ctx context.Context, url string, hold time.Duration) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for ctx.Err() == nil {
		began := time.Now()
		tx, err := conn.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, `SELECT count(*) FROM audit.events_free; SELECT count(*) FROM audit.events_team;
				SELECT count(*) FROM audit.events_enterprise`)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(began.Add(hold))):
		}
		tx.Rollback(context.WithoutCancel(ctx))
	}
	return nil
}
