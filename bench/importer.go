package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/importer"
)

// importRows is the number of rows each side loads at scale 1.
const importRows = 200_000

// benchImport compares `auditlog import` of a CSV export (parsing, COPY into
// the staging table, every row checked as log_event checks it, the move into
// the tier table) with a raw COPY of the same file straight into the same
// tier table, which checks nothing; and the import of the same rows without
// their ids, which the import derives from each row's values. Each side
// loads into a fresh database whose leaves already exist, so none pays for
// making them; the phases are interleaved (COPY, import, import without
// ids, and again) so drift hits all.
func benchImport(ctx context.Context, b *bench) ([]row, error) {
	n := max(1000, int(importRows*b.scale))
	org := "b0000000-0000-4000-8000-000000000001"
	file, err := exportFile(org, n, true)
	if err != nil {
		return nil, err
	}
	noIDs, err := exportFile(org, n, false)
	if err != nil {
		return nil, err
	}
	rawCopy := func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(file), `COPY audit.events_enterprise (`+
			`id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_id, actor_email, ip, user_agent, request_id, metadata)
			FROM STDIN WITH (FORMAT csv, HEADER)`)
		return err
	}
	bulkImport := func(file []byte) func(context.Context, *pgx.Conn) error {
		return func(ctx context.Context, conn *pgx.Conn) error {
			rep, err := importer.Import(ctx, conn, bytes.NewReader(file), importer.Options{Format: importer.FormatCSV})
			if err == nil && rep.Loaded != int64(n) {
				err = fmt.Errorf("loaded %d of %d rows: %v", rep.Loaded, n, rep.Problems)
			}
			return err
		}
	}

	var raw, imp, impNoIDs float64
	for round := range 2 {
		for _, side := range []struct {
			load func(context.Context, *pgx.Conn) error
			rate *float64
		}{{rawCopy, &raw}, {bulkImport(file), &imp}, {bulkImport(noIDs), &impNoIDs}} {
			d, err := timeLoad(ctx, b, org, side.load)
			if err != nil {
				return nil, fmt.Errorf("round %d: %w", round+1, err)
			}
			*side.rate += float64(n) / d.Seconds() / 2
		}
	}
	return []row{{
		benchmark: fmt.Sprintf("import rows/s vs raw COPY into the tier table, %d rows of CSV", n),
		measured:  fmt.Sprintf("%.0f rows/s", imp),
		baseline:  fmt.Sprintf("%.0f rows/s", raw),
		ratio:     imp / raw,
	}, {
		benchmark: fmt.Sprintf("import rows/s of the same %d rows without ids vs raw COPY", n),
		measured:  fmt.Sprintf("%.0f rows/s", impNoIDs),
		baseline:  fmt.Sprintf("%.0f rows/s", raw),
		ratio:     impNoIDs / raw,
	}}, nil
}

// timeLoad makes a fresh database with the org and the leaves of the last
// 31 days, and times load on it.
func timeLoad(ctx context.Context, b *bench, org string, load func(context.Context, *pgx.Conn) error) (time.Duration, error) {
	url, err := b.freshDB(ctx, "auditlog_bench_import")
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		INSERT INTO cloud.orgs (id, name, plan) VALUES ('`+org+`', 'bench', 'enterprise');
		SELECT audit.make_leaf('enterprise', d::date) FROM generate_series(current_date - 31, current_date, interval '1 day') d;
		CHECKPOINT`)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := load(ctx, conn); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// exportFile is n events of one org over the last 30 days, as the API's CSV
// export writes them: users signing in, clusters changed, some through a
// token. Without ids, the id column is left out, as a file from another
// system might; the events are the same.
func exportFile(org string, n int, ids bool) ([]byte, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	first := 0
	if !ids {
		first = 1 // Columns[0] is id
	}
	w.Write(importer.Columns[first:])
	now := time.Now().Add(-time.Hour)
	uuid := func() string {
		return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.Uint32()>>16, rng.Uint32()>>20, rng.Uint32()>>20, rng.Uint64()>>16)
	}
	for i := range n {
		at := now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))).UTC().Format("2006-01-02T15:04:05.000000Z")
		user := rng.IntN(50)
		action, target, metadata := "auth.signin", "", `{"method": "sso"}`
		if i%3 == 0 {
			action, target = "cluster.updated", fmt.Sprintf("c%04d", rng.IntN(40))
			metadata = fmt.Sprintf(`{"changes": {"labels": [{"team": "platform"}, {"team": "platform", "cost-center": "%d"}]}, "via_pat": "ci-deploy"}`, rng.IntN(900))
		}
		targetType := map[string]string{"auth.signin": "auth", "cluster.updated": "cluster"}[action]
		w.Write([]string{uuid(), org, at, action, targetType, target, "user", uuid(), fmt.Sprintf("user%d@example.com", user),
			fmt.Sprintf("203.0.113.%d", 1+user), "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15", fmt.Sprintf("req_%016x", rng.Uint64()), metadata}[first:])
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}
