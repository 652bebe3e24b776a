package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/api"
	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/retention"
)

// largeDatabase is benchLarge's database, kept after a run for a look; the
// retention pass at the end changes it, so the next run loads it again.
const largeDatabase = "auditlog_bench_large"

// largeLoads is the API bench's shape at ten times the events: 100M at
// -scale 1, 60M enterprise over 366 daily leaves (one org holding 2M, the
// export's), 30M team over 31 (one org holding 1M, the one re-tiered), 10M
// free over 8, in 1,000 orgs.
var largeLoads = []tierLoad{{"enterprise", 100, 60_000_000, 366, 2_000_000, "big"},
	{"team", 300, 30_000_000, 31, 1_000_000, "retier"}, {"free", 600, 10_000_000, 8, 0, ""}}

// benchLarge loads largeLoads by COPY and measures, on that size: the load,
// the size on disk, first pages per filter through HTTP, what each request
// costs the database (planning time, relations locked in one transaction),
// the feed and CSV export rates, and a retention pass (premake and retire
// the expired days), then a re-tier of the 1M-event org. It runs only when
// -run names it (make bench-large).
func benchLarge(ctx context.Context, b *bench) ([]row, error) {
	if err := b.roomFor(ctx, largeLoads); err != nil {
		return nil, err
	}
	url, orgs, loadTook, err := b.apiData(ctx, largeDatabase, largeLoads)
	if err != nil {
		return nil, err
	}
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	big, moved := orgs["big"][0], orgs["retier"][0]
	var total int64
	for _, l := range largeLoads {
		total += int64(float64(l.events) * b.scale)
	}
	var rows []row
	if loadTook > 0 {
		rows = append(rows, row{
			benchmark: fmt.Sprintf("load %d events by COPY (3 streams, one per tier), sealing them, then VACUUM (ANALYZE)", total),
			measured:  fmt.Sprintf("%s (%.0f events/s)", loadTook.Round(time.Second), float64(total)/loadTook.Seconds()),
		})
	}
	size, err := largeSize(ctx, conn)
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{benchmark: fmt.Sprintf("size on disk of %d events", total), measured: size})
	srv, err := b.startAPI(ctx, url)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	pages, err := srv.firstPageLatency(ctx, orgs, 10*time.Millisecond)
	if err != nil {
		return nil, err
	}
	rows = append(rows, pages...)
	costs, err := requestCosts(ctx, url, orgs)
	if err != nil {
		return nil, err
	}
	rows = append(rows, costs...)
	feed, err := srv.feedRate(ctx, big)
	if err != nil {
		return nil, err
	}
	rows = append(rows, feed)
	export, err := srv.export(ctx, url, big)
	if err != nil {
		return nil, err
	}
	rows = append(rows, export...)
	srv.stop()

	passes, err := b.largeRetention(ctx, url, conn, moved.id)
	if err != nil {
		return nil, err
	}
	rows = append(rows, passes...)
	// The pass changed the data set: the next run loads it again.
	_, err = conn.Exec(ctx, "DELETE FROM bench_loaded")
	return rows, err
}

// bytesPerEvent is what an event of the data set takes on disk while it
// loads: its leaf's share of the heap and the three indexes, and its seal
// with its index (measured at 50M: 47 GB as pg_size_pretty counts, GiB, or
// 1,010 bytes an event), and the temporary files of the sort that seals the
// load, still there when the last seal is written (about 50 bytes an event).
// The WAL the load leaves comes on top (walNeed).
const bytesPerEvent = 1100

// roomFor refuses to load a data set the server's disk cannot hold, before
// filling the disk (shared with whatever else runs there) half-way: a
// server on this machine only, where its data directory can be looked at.
func (b *bench) roomFor(ctx context.Context, loads []tierLoad) error {
	conn, err := database.Connect(ctx, b.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var dir string
	var wal float64
	err = conn.QueryRow(ctx, "SELECT current_setting('data_directory'), pg_size_bytes(current_setting('max_wal_size'))").Scan(&dir, &wal)
	if err != nil {
		return err
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		b.logger.Warn("cannot tell the server's free disk space; loading anyway", "data_directory", dir, "err", err)
		return nil
	}
	var events float64
	for _, l := range loads {
		events += float64(l.events)
	}
	free := float64(fs.Bavail) * float64(fs.Bsize)
	need, fits := diskNeed(events, b.scale, wal, free)
	if need > free {
		return fmt.Errorf("%.0f events need about %.0f GB on disk (max_wal_size, %.0f GB, of WAL at most) and %s has %.0f GB free: use a smaller -scale (%.2f fits) or a bigger disk",
			events*b.scale, need/1e9, wal/1e9, dir, free/1e9, fits)
	}
	return nil
}

// diskNeed is the disk, in bytes, that loading events (at -scale 1) at
// scale needs on a server whose max_wal_size is maxWAL, and the scale that
// fits in free bytes (0 if none does).
func diskNeed(events, scale, maxWAL, free float64) (need, fits float64) {
	data := events * scale * bytesPerEvent
	need = data + walNeed(data, maxWAL)
	// The largest data that fits: free less max_wal_size, unless that
	// leaves less data than would write max_wal_size of WAL: then free
	// less the WAL that data writes.
	fit := free - maxWAL
	if walNeed(fit, maxWAL) < maxWAL {
		fit = free / (1 + walPerByte)
	}
	return need, max(0, fit/(events*bytesPerEvent))
}

// walPerByte is the WAL a load writes for each byte it leaves on disk, at
// most: the rows and index entries once more, and full-page images.
const walPerByte = 2

// walNeed is the WAL a load of data bytes leaves until the next checkpoint:
// up to max_wal_size, but no more than the load writes (a load at a tiny
// -scale, as TestEveryBenchmarkRuns', leaves a few MB whatever the setting).
func walNeed(data, maxWAL float64) float64 {
	return min(maxWAL, walPerByte*data)
}

// largeSize is the database's size on disk, each tier table's (its leaves,
// indexes and TOAST) and the seals'.
func largeSize(ctx context.Context, conn *pgx.Conn) (string, error) {
	var s string
	err := conn.QueryRow(ctx, `
		SELECT pg_size_pretty(pg_database_size(current_database())) || ' (' || string_agg(t.tier || ' ' || pg_size_pretty(
		         (SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
		          WHERE i.inhparent = ('audit.events_' || t.tier)::regclass)), ', ' ORDER BY t.tier)
		  || ', seals ' || pg_size_pretty(pg_total_relation_size('audit.seals')) || ')'
		FROM audit.tiers t`).Scan(&s)
	return s, err
}

// feedRate walks the org's feed from the start, 1,000 events a request, for
// 10 s at most, and returns the events per second.
func (s *apiServer) feedRate(ctx context.Context, o benchOrg) (row, error) {
	var n int64
	after := int64(0)
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		var page struct {
			Events    []json.RawMessage `json:"events"`
			NextAfter int64             `json:"next_after"`
			HeadSeq   int64             `json:"head_seq"`
		}
		var body strings.Builder
		if err := s.get(ctx, o, fmt.Sprintf("/api/orgs/%s/audit/feed?after=%d&limit=1000", o.id, after), &body); err != nil {
			return row{}, err
		}
		if err := json.Unmarshal([]byte(body.String()), &page); err != nil {
			return row{}, fmt.Errorf("feed: %w", err)
		}
		n += int64(len(page.Events))
		after = page.NextAfter
		if after >= page.HeadSeq {
			break
		}
	}
	d := time.Since(start)
	return row{
		benchmark: fmt.Sprintf("feed via HTTP, limit=1000 a request, from seq 1: %d events in %s", n, d.Round(time.Millisecond)),
		measured:  fmt.Sprintf("%.0f events/s", float64(n)/d.Seconds()),
	}, nil
}

// statementLog records the statements a pool's connections send, in order.
type statementLog struct {
	mu    sync.Mutex
	stmts []loggedStatement
}

type loggedStatement struct {
	sql  string
	args []any
}

func (l *statementLog) add(sql string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stmts = append(l.stmts, loggedStatement{sql, args})
}

// take returns the statements recorded so far and forgets them.
func (l *statementLog) take() []loggedStatement {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stmts
	l.stmts = nil
	return s
}

func (l *statementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL, d.Args)
	return ctx
}

func (l *statementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *statementLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	for _, q := range d.Batch.QueuedQueries {
		l.add(q.SQL, q.Arguments)
	}
	return ctx
}

func (l *statementLog) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (l *statementLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// requestCosts serves each first page of pageFilters (and a feed page)
// in-process, for an org of each plan, with the API as the bench's reader
// role, records the statements the API sends, and runs them again the same
// way, transaction by transaction, each prepared and under EXPLAIN
// (ANALYZE), with the API's plan_cache_mode (generic plans for pages): the planning
// time of all of a request's statements, and the most relations one of its
// transactions holds locked. The figure per filter is the worst over the
// plans.
func requestCosts(ctx context.Context, url string, orgs map[string][]benchOrg) ([]row, error) {
	apiURL, err := database.WithUser(url, "auditlog_bench_api", "")
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(apiURL)
	if err != nil {
		return nil, err
	}
	api.ConfigurePool(cfg)
	log := &statementLog{}
	cfg.ConnConfig.Tracer = log
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	handler := api.New(api.Config{Pool: pool, RateLimit: math.Inf(1)})
	replay, err := pgx.Connect(ctx, apiURL)
	if err != nil {
		return nil, err
	}
	defer replay.Close(ctx)

	type request struct{ name, query string }
	var requests []request
	for _, f := range pageFilters {
		requests = append(requests, request{"first page, " + f.name, ""})
	}
	requests = append(requests, request{"feed page of 1,000 events from seq 1", "feed"})
	var rows []row
	for i, r := range requests {
		var planning time.Duration
		var locks, stmts int
		for _, plan := range []string{"big", "enterprise", "team", "free"} {
			o := orgs[plan][0]
			path := "/api/orgs/" + o.id + "/audit/feed?after=0&limit=1000"
			if r.query == "" {
				path = "/api/orgs/" + o.id + "/audit?" + pageFilters[i].query(o, time.Now())
			}
			// The first request fills the API's caches (catalog, keys).
			for range 2 {
				log.take()
				if err := serveOnce(ctx, handler, o, path); err != nil {
					return nil, fmt.Errorf("%s: %w", r.name, err)
				}
			}
			p, l, n, err := replayCosts(ctx, replay, log.take())
			if err != nil {
				return nil, fmt.Errorf("%s, %s org: %w", r.name, plan, err)
			}
			planning, locks, stmts = max(planning, p), max(locks, l), max(stmts, n)
		}
		rows = append(rows, row{
			benchmark: fmt.Sprintf("%s: planning time of its statements (%d at most), relations locked in one transaction", r.name, stmts),
			measured:  fmt.Sprintf("%s, %d relations", ms(planning), locks),
			goal:      "<= 50 relations",
			met:       ptr(locks <= 50),
		})
	}
	return rows, nil
}

// serveOnce serves one GET of path with the org's token through handler.
func serveOnce(ctx context.Context, handler http.Handler, o benchOrg, path string) error {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+o.token)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		body, _ := io.ReadAll(rec.Body)
		return fmt.Errorf("GET %s: %d %s", path, rec.Code, body)
	}
	return nil
}

// replayCosts runs stmts again on conn, transaction by transaction, with
// their settings, each query prepared and run under EXPLAIN (ANALYZE,
// SUMMARY), and returns the sum of their planning times, the most relations
// (not counting the system catalogs) a transaction held locked at its end,
// and the number of queries.
func replayCosts(ctx context.Context, conn *pgx.Conn, stmts []loggedStatement) (planning time.Duration, locks, queries int, err error) {
	// Each query's arguments as literals first, outside the transactions:
	// EXECUTE under EXPLAIN takes no bind parameters.
	literals := make([][]string, len(stmts))
	for i, s := range stmts {
		if kindOf(s) == "query" {
			if literals[i], err = asLiterals(ctx, conn, s); err != nil {
				return 0, 0, 0, fmt.Errorf("%w\n%s", err, s.sql)
			}
		}
	}
	inTx := false
	countLocks := func() error {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'
			AND relation >= 16384`).Scan(&n)
		locks = max(locks, n)
		return err
	}
	for i, s := range stmts {
		switch kindOf(s) {
		case "begin":
			_, err = conn.Exec(ctx, s.sql)
			inTx = true
		case "commit":
			if err = countLocks(); err == nil {
				_, err = conn.Exec(ctx, "ROLLBACK")
			}
			inTx = false
		case "setting":
			_, err = conn.Exec(ctx, s.sql, s.args...)
		default:
			var p time.Duration
			p, err = explainPrepared(ctx, conn, s.sql, literals[i], !inTx, countLocks)
			planning += p
			queries++
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%w\n%s", err, s.sql)
		}
	}
	return planning, locks, queries, nil
}

// kindOf sorts a statement the API sent: begin, commit, setting (SET or a
// set_config) or query.
func kindOf(s loggedStatement) string {
	switch word := strings.ToUpper(strings.Fields(s.sql + " x")[0]); {
	case word == "BEGIN" || word == "COMMIT":
		return strings.ToLower(word)
	case word == "SET" || strings.Contains(s.sql, "set_config("):
		return "setting"
	}
	return "query"
}

// asLiterals writes each argument of s as a typed SQL literal of its
// parameter's type, as the server quotes it.
func asLiterals(ctx context.Context, conn *pgx.Conn, s loggedStatement) ([]string, error) {
	sd, err := conn.Prepare(ctx, "bench_replay", s.sql)
	if err != nil {
		return nil, err
	}
	defer conn.Deallocate(ctx, "bench_replay")
	var lits []string
	for i, oid := range sd.ParamOIDs {
		var typ, lit string
		if err := conn.QueryRow(ctx, "SELECT format_type($1, NULL)", oid).Scan(&typ); err != nil {
			return nil, err
		}
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT quote_nullable($1::%s)", typ), s.args[i]).Scan(&lit); err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		lits = append(lits, lit+"::"+typ)
	}
	return lits, nil
}

// explainPrepared prepares sql and runs it with the literals under EXPLAIN
// (ANALYZE, SUMMARY), with the plan_cache_mode the API's transaction set
// (pages: force_generic_plan), in a transaction of its own when alone
// (counting its locks at the end), and returns the planning time EXPLAIN
// reports.
func explainPrepared(ctx context.Context, conn *pgx.Conn, sql string, literals []string, alone bool, countLocks func() error) (time.Duration, error) {
	if alone {
		if _, err := conn.Exec(ctx, "BEGIN READ ONLY"); err != nil {
			return 0, err
		}
		defer conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
	execute := "EXECUTE bench_replay"
	if len(literals) > 0 {
		execute += "(" + strings.Join(literals, ", ") + ")"
	}
	var plan []struct {
		Planning float64 `json:"Planning Time"`
	}
	_, err := conn.Prepare(ctx, "bench_replay", sql)
	if err == nil {
		err = conn.QueryRow(ctx, "EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) "+execute).Scan(&plan)
		err = errors.Join(err, conn.Deallocate(ctx, "bench_replay"))
	}
	if err == nil && alone {
		err = countLocks()
	}
	if err != nil {
		return 0, err
	}
	if len(plan) == 0 {
		return 0, errors.New("EXPLAIN gave no plan")
	}
	return time.Duration(plan[0].Planning * float64(time.Millisecond)), nil
}

// largeRetention times one retention pass on the loaded data (premaking the
// days ahead the load left out, retiring each tier's expired day), then,
// after the 1M-event org moves from team to enterprise, the pass that
// re-tiers it.
func (b *bench) largeRetention(ctx context.Context, url string, conn *pgx.Conn, moved string) ([]row, error) {
	w, stop, err := newWorker(ctx, url, retention.Config{Logger: b.logger})
	if err != nil {
		return nil, err
	}
	defer stop()
	var retired string
	err = conn.QueryRow(ctx, `
		SELECT coalesce(string_agg(format('%s %s rows %s', leaf, n, pg_size_pretty(size)), ', ' ORDER BY leaf), 'none')
		FROM (SELECT c.relname AS leaf, c.reltuples::bigint AS n, pg_total_relation_size(c.oid) AS size
		      FROM audit.expired_leaves() e JOIN pg_class c ON c.relname = e.leaf
		      JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = 'audit') l`).Scan(&retired)
	if err != nil {
		return nil, err
	}
	first, err := w.RunOnce(ctx)
	if err != nil {
		return nil, err
	}
	perDay := first.Duration / time.Duration(max(1, len(first.Dropped)))
	if _, err := conn.Exec(ctx, "UPDATE cloud.orgs SET plan = 'enterprise' WHERE id = $1", moved); err != nil {
		return nil, err
	}
	second, err := w.RunOnce(ctx)
	if err != nil {
		return nil, err
	}
	return []row{{
		benchmark: fmt.Sprintf("retention pass: premake %d leaves, retire %d expired days (%s)", len(first.Created), len(first.Dropped), retired),
		measured:  fmt.Sprintf("%s (%s a day retired)", first.Duration.Round(time.Millisecond), perDay.Round(time.Millisecond)),
		goal:      "<= 1 s a day",
		met:       ptr(len(first.Dropped) > 0 && perDay <= time.Second),
	}, {
		benchmark: fmt.Sprintf("retention pass re-tiering one org from team to enterprise: %d events moved", second.Moved()),
		measured:  fmt.Sprintf("%s (%.0f events/s)", second.Duration.Round(time.Millisecond), float64(second.Moved())/second.Duration.Seconds()),
	}}, nil
}
