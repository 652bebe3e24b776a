package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/database"
)

// benchLogEvent compares recording an event through audit.log_event with
// inserting the same row into unpartitioned tables with the tier table's
// columns, checks and indexes: one plain, one whose foreign keys to cloud.orgs
// and audit.actions let PostgreSQL check the org and the action (the honest
// reference: what a careful engineer gets without the audit log). Single-event
// transactions, durable, then with commits not flushed, where the function's
// own cost shows most. Then an application's transaction through the Go
// package over TCP: BEGIN, an UPDATE of a control-plane row, the event with
// its request's context, COMMIT, against the same with a plain INSERT. Same
// clients, same run, phases interleaved so drift hits every side.
func benchLogEvent(ctx context.Context, b *bench) ([]row, error) {
	const name = "auditlog_bench_log_event"
	url, conn, err := b.freshConn(ctx, name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	tcpURL, err := database.WithDatabase(b.tcpURL, name)
	if err != nil {
		return nil, err
	}
	const clients = 4
	var org, user string
	err = conn.QueryRow(ctx, `
		WITH o AS (INSERT INTO cloud.orgs (name, plan) VALUES ('bench', 'team') RETURNING id),
		     u AS (INSERT INTO cloud.users (email) VALUES ('bench@example.com') RETURNING id)
		SELECT o.id::text, u.id::text FROM o, u`).Scan(&org, &user)
	if err != nil {
		return nil, err
	}
	// Leaves for today and tomorrow exist, as the retention worker keeps them.
	// The application's control-plane table has a row per client, so that
	// the clients' UPDATEs do not wait for each other.
	_, err = conn.Exec(ctx, `
		SELECT audit.make_leaf('team', current_date), audit.make_leaf('team', current_date + 1);
		CREATE TABLE plain_events (LIKE audit.events_team INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
		CREATE TABLE fk_events (LIKE audit.events_team INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES,
		                        FOREIGN KEY (org_id) REFERENCES cloud.orgs (id),
		                        FOREIGN KEY (action) REFERENCES audit.actions (action));
		CREATE TABLE clusters (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO clusters SELECT g, 'c' FROM generate_series(0, `+fmt.Sprint(clients-1)+`) g`)
	if err != nil {
		return nil, err
	}

	const metadata = `{"name": "prod-eu-1", "region": "eu-west-1"}`
	insertInto := func(table string) op {
		return func(ctx context.Context, c *pgx.Conn, i int) error {
			_, err := c.Exec(ctx, `INSERT INTO `+table+` (id, org_id, occurred_at, action, target_type, target_id,
				actor_type, actor_id, actor_email, metadata)
				VALUES (gen_random_uuid(), $1, clock_timestamp(), 'cluster.created', 'cluster', $2, 'user', $3, $4, $5)`,
				org, fmt.Sprint("cl-", i), user, "bench@example.com", metadata)
			return err
		}
	}
	logEvent := func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, `SELECT audit.log_event(org_id => $1, action => 'cluster.created', target_id => $2,
			actor_id => $3, actor_email => $4, metadata => $5)`,
			org, fmt.Sprint("cl-", i), user, "bench@example.com", metadata)
		return err
	}

	var rows []row
	for _, mode := range []struct{ name, syncCommit string }{
		{"durable commits", "on"},
		{"commits not flushed", "off"},
	} {
		setup := func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET synchronous_commit = "+mode.syncCommit)
			return err
		}
		rate, err := interleaved(ctx, url, clients, b.duration, setup,
			side{"plain insert", insertInto("plain_events")}, side{"FK insert", insertInto("fk_events")}, side{"log_event", logEvent})
		if err != nil {
			return nil, err
		}
		plain, fk, fn := rate[0], rate[1], rate[2]
		r := row{
			benchmark: fmt.Sprintf("log_event tx/s vs FK-validated INSERT, %d clients, %s, one statement per transaction", clients, mode.name),
			measured:  fmt.Sprintf("%.0f tx/s", fn),
			baseline:  fmt.Sprintf("%.0f tx/s", fk),
			ratio:     fn / fk,
		}
		if mode.syncCommit == "on" { // the goals are for durable commits
			r.goal, r.met = ">= 0.90", ptr(r.ratio >= 0.90)
		}
		rows = append(rows, r)
		r = row{
			benchmark: fmt.Sprintf("log_event tx/s vs plain INSERT, %d clients, %s, one statement per transaction", clients, mode.name),
			measured:  fmt.Sprintf("%.0f tx/s", fn),
			baseline:  fmt.Sprintf("%.0f tx/s", plain),
			ratio:     fn / plain,
		}
		if mode.syncCommit == "on" {
			r.goal, r.met = ">= 0.85 (stretch)", ptr(r.ratio >= 0.85)
		}
		rows = append(rows, r)
	}

	appRows, err := benchAppTransaction(ctx, b, tcpURL, clients, org, user)
	if err != nil {
		return nil, err
	}
	return append(rows, appRows...), nil
}

// benchAppTransaction runs an application's transaction over TCP through
// pgx, as the control plane does: BEGIN; UPDATE its row; record the event
// with the request's full context; COMMIT. The audit call is the Go
// package's Record (one statement), the older SetContext then Log (two), or
// a plain INSERT of the same row (the baseline).
func benchAppTransaction(ctx context.Context, b *bench, url string, clients int, org, user string) ([]row, error) {
	request := auditlog.Context{
		Actor:     auditlog.Actor{ID: user, Email: "bench@example.com", ViaPAT: "deploy-bot"},
		IP:        netip.MustParseAddr("203.0.113.7"),
		UserAgent: "terraform/1.9.5 (+https://www.terraform.io) terraform-provider-cloud/2.3.1",
		RequestID: "req-01JEXAMPLE8Y3Q5Z7K2M4N6P8R",
	}
	event := func(i int) auditlog.Event {
		return auditlog.Event{OrgID: org, Action: auditlog.ClusterUpdated, TargetID: fmt.Sprint("cl-", i),
			Metadata: map[string]any{"changes": map[string]any{"name": []string{"prod", fmt.Sprint("prod-", i)}}}}
	}
	// appTx wraps the audit call in the application's transaction. runClients
	// numbers client c's operations from c*1_000_000: each client updates a
	// row of its own.
	appTx := func(audit func(context.Context, pgx.Tx, int) error) op {
		return func(ctx context.Context, c *pgx.Conn, i int) error {
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE clusters SET name = $1 WHERE id = $2", fmt.Sprint("prod-", i), i/1_000_000); err != nil {
					return err
				}
				return audit(ctx, tx, i)
			})
		}
	}
	plain := appTx(func(ctx context.Context, tx pgx.Tx, i int) error {
		e := event(i)
		metadata := e.Metadata.(map[string]any)
		metadata["via_pat"] = request.Actor.ViaPAT
		_, err := tx.Exec(ctx, `INSERT INTO plain_events (id, org_id, occurred_at, action, target_type, target_id,
			actor_type, actor_id, actor_email, ip, user_agent, request_id, metadata)
			VALUES (gen_random_uuid(), $1, clock_timestamp(), $2, 'cluster', $3, 'user', $4, $5, $6, $7, $8, $9)`,
			e.OrgID, string(e.Action), e.TargetID, request.Actor.ID, request.Actor.Email, request.IP,
			request.UserAgent, request.RequestID, metadata)
		return err
	})
	record := appTx(func(ctx context.Context, tx pgx.Tx, i int) error {
		_, err := auditlog.Record(ctx, tx, request, event(i))
		return err
	})
	twoCalls := appTx(func(ctx context.Context, tx pgx.Tx, i int) error {
		if err := auditlog.SetContext(ctx, tx, request); err != nil {
			return err
		}
		_, err := auditlog.Log(ctx, tx, event(i))
		return err
	})
	rate, err := interleaved(ctx, url, clients, b.duration, nil,
		side{"plain insert transaction", plain}, side{"Record transaction", record}, side{"SetContext + Log transaction", twoCalls})
	if err != nil {
		return nil, err
	}
	const what = "app tx/s (BEGIN; UPDATE; %s; COMMIT) vs the same with a plain INSERT, %d clients, Go over TCP, durable commits"
	return []row{{
		benchmark: fmt.Sprintf(what, "auditlog.Record", clients),
		measured:  fmt.Sprintf("%.0f tx/s", rate[1]),
		baseline:  fmt.Sprintf("%.0f tx/s", rate[0]),
		ratio:     rate[1] / rate[0],
		goal:      ">= 0.90",
		met:       ptr(rate[1]/rate[0] >= 0.90),
	}, {
		benchmark: fmt.Sprintf(what, "SetContext, then Log", clients),
		measured:  fmt.Sprintf("%.0f tx/s", rate[2]),
		baseline:  fmt.Sprintf("%.0f tx/s", rate[0]),
		ratio:     rate[2] / rate[0],
	}}, nil
}

// op is one operation of a load: i numbers it.
type op = func(context.Context, *pgx.Conn, int) error

// side is one of the loads interleaved compares.
type side struct {
	name string
	op   op
}

// interleaved runs each side with the same clients for d in all, in two
// rounds of d/2 each (a, b, c, a, b, c) so that drift hits every side, and
// returns each side's operations per second.
func interleaved(ctx context.Context, url string, clients int, d time.Duration,
	setup func(context.Context, *pgx.Conn) error, sides ...side) ([]float64, error) {
	rates := make([]float64, len(sides))
	for range 2 {
		for i, s := range sides {
			r, err := runClients(ctx, url, clients, d/2, setup, s.op)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			rates[i] += r.perSecond() / 2
		}
	}
	return rates, nil
}
