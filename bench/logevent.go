package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// benchLogEvent compares single-event transactions through audit.log_event
// with a plain INSERT of the same row into an unpartitioned table with the
// same indexes: same clients, same run, phases interleaved so drift hits
// both. Measured with durable commits and with commits not flushed, where
// the function's own cost shows most.
func benchLogEvent(ctx context.Context, b *bench) ([]row, error) {
	url, conn, err := b.freshConn(ctx, "auditlog_bench_log_event")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var org, user string
	err = conn.QueryRow(ctx, `
		WITH o AS (INSERT INTO cloud.orgs (name, plan) VALUES ('bench', 'team') RETURNING id),
		     u AS (INSERT INTO cloud.users (email) VALUES ('bench@example.com') RETURNING id)
		SELECT o.id::text, u.id::text FROM o, u`).Scan(&org, &user)
	if err != nil {
		return nil, err
	}
	// Leaves for today and tomorrow exist, as the retention worker keeps them;
	// the plain table has the tier table's columns, checks and indexes.
	_, err = conn.Exec(ctx, `
		SELECT audit.make_leaf('team', current_date), audit.make_leaf('team', current_date + 1);
		CREATE TABLE plain_events (LIKE audit.events_team INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`)
	if err != nil {
		return nil, err
	}
	const metadata = `{"name": "prod-eu-1", "region": "eu-west-1"}`
	insert := func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, `INSERT INTO plain_events (id, org_id, occurred_at, action, target_type, target_id,
			actor_type, actor_id, actor_email, metadata)
			VALUES (gen_random_uuid(), $1, clock_timestamp(), 'cluster.created', 'cluster', $2, 'user', $3, $4, $5)`,
			org, fmt.Sprint("cl-", i), user, "bench@example.com", metadata)
		return err
	}
	logEvent := func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, `SELECT audit.log_event(org_id => $1, action => 'cluster.created', target_id => $2,
			actor_id => $3, actor_email => $4, metadata => $5)`,
			org, fmt.Sprint("cl-", i), user, "bench@example.com", metadata)
		return err
	}

	// inTx runs op as an application does: in a transaction of its own,
	// BEGIN and COMMIT included.
	inTx := func(op func(context.Context, *pgx.Conn, int) error) func(context.Context, *pgx.Conn, int) error {
		return func(ctx context.Context, c *pgx.Conn, i int) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return op(ctx, tx.Conn(), i) })
		}
	}

	const clients = 4
	var rows []row
	for _, mode := range []struct {
		name, syncCommit string
		explicit         bool
		goal             bool // the goal is for durable commits
	}{
		{"durable commits, one statement per transaction", "on", false, true},
		{"durable commits, BEGIN; statement; COMMIT", "on", true, true},
		{"commits not flushed, one statement per transaction", "off", false, false},
	} {
		setup := func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET synchronous_commit = "+mode.syncCommit)
			return err
		}
		plainOp, fnOp := insert, logEvent
		if mode.explicit {
			plainOp, fnOp = inTx(insert), inTx(logEvent)
		}
		var fn, plain float64
		for range 2 { // interleaved: plain, function, plain, function
			p, err := runClients(ctx, url, clients, b.duration/2, setup, plainOp)
			if err != nil {
				return nil, fmt.Errorf("plain insert: %w", err)
			}
			f, err := runClients(ctx, url, clients, b.duration/2, setup, fnOp)
			if err != nil {
				return nil, fmt.Errorf("log_event: %w", err)
			}
			plain += p.perSecond() / 2
			fn += f.perSecond() / 2
		}
		ratio := fn / plain
		r := row{
			benchmark: fmt.Sprintf("log_event tx/s vs plain INSERT, %d clients, %s", clients, mode.name),
			measured:  fmt.Sprintf("%.0f tx/s", fn),
			baseline:  fmt.Sprintf("%.0f tx/s", plain),
			ratio:     ratio,
		}
		if mode.goal {
			r.goal, r.met = ">= 0.85", ptr(ratio >= 0.85)
		}
		rows = append(rows, r)
	}
	return rows, nil
}
