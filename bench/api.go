package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/pglocal"
	"github.com/auditlog/auditlog/internal/schema"
	"github.com/auditlog/auditlog/internal/store"
)

// apiDatabase is the benchmark's database; it is kept after the run and
// reused by the next one on the same day at the same scale and schema.
const apiDatabase = "auditlog_bench_api"

// tierLoad is how many orgs and events a tier gets, spread evenly over its
// days, and how many of those events its first org holds (big, if not 0),
// which bench_orgs lists under bigPlan instead of the tier.
type tierLoad struct {
	tier    string
	orgs    int
	events  int
	days    int
	big     int
	bigPlan string
}

// apiLoads is the design's scale of 10M events, 6M enterprise over 366 daily
// leaves, 3M team over 31, 1M free over 8, in 1,000 orgs. One enterprise org
// holds the 2M events the export is measured on.
var apiLoads = []tierLoad{{"enterprise", 100, 6_000_000, 366, 2_000_000, "big"}, {"team", 300, 3_000_000, 31, 0, ""},
	{"free", 600, 1_000_000, 8, 0, ""}}

// benchOrg is an org of the data set with its owner's token.
type benchOrg struct {
	id, plan, token string
	emails          []string // its members; the first is the owner
}

// benchAPI measures the API as a separate process (the built binary)
// through HTTP: first-page latency with each filter, CSV export rows per
// second against psql copying the same select in the same run, and the
// server's peak RSS while exporting.
func benchAPI(ctx context.Context, b *bench) ([]row, error) {
	url, orgs, _, err := b.apiData(ctx, apiDatabase, apiLoads)
	if err != nil {
		return nil, err
	}
	srv, err := b.startAPI(ctx, url)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	rows, err := srv.firstPageLatency(ctx, orgs, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	export, err := srv.export(ctx, url, orgs["big"][0])
	if err != nil {
		return nil, err
	}
	return append(rows, export...), nil
}

// apiData returns the URL of database name loaded with the data set of
// loads, loading it unless the previous run left one of the same scale,
// schema and day, and how long loading took (0: reused).
func (b *bench) apiData(ctx context.Context, name string, loads []tierLoad) (string, map[string][]benchOrg, time.Duration, error) {
	url, err := database.WithDatabase(b.adminURL, name)
	if err != nil {
		return "", nil, 0, err
	}
	if orgs, err := loadedOrgs(ctx, url, b.scale); err == nil {
		b.logger.Info("reusing the data set", "database", name)
		return url, orgs, 0, nil
	}
	if url, err = b.freshDB(ctx, name); err != nil {
		return "", nil, 0, err
	}
	start := time.Now()
	if err := loadAPIData(ctx, b, url, loads); err != nil {
		return "", nil, 0, fmt.Errorf("load: %w", err)
	}
	took := time.Since(start)
	b.logger.Info("loaded the data set", "database", name, "took", took.Round(time.Second))
	orgs, err := loadedOrgs(ctx, url, b.scale)
	return url, orgs, took, err
}

// loadedOrgs reads the orgs of a loaded data set, or fails if there is none
// to reuse.
func loadedOrgs(ctx context.Context, url string, scale float64) (map[string][]benchOrg, error) {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var ok bool
	err = conn.QueryRow(ctx, `SELECT scale = $1 AND schema_hash = $2 AND loaded_at::date = current_date
		                            AND EXISTS (SELECT FROM audit.seals) FROM bench_loaded`,
		scale, schema.Hash()).Scan(&ok)
	if err != nil || !ok {
		return nil, errors.Join(err, errors.New("no data set to reuse"))
	}
	rows, err := conn.Query(ctx, "SELECT org_id::text, plan, token, emails FROM bench_orgs ORDER BY plan, org_id")
	if err != nil {
		return nil, err
	}
	orgs := map[string][]benchOrg{}
	var o benchOrg
	_, err = pgx.ForEachRow(rows, []any{&o.id, &o.plan, &o.token, &o.emails}, func() error {
		orgs[o.plan] = append(orgs[o.plan], o)
		return nil
	})
	return orgs, err
}

// loadAPIData makes the orgs, members and tokens, the leaves, then COPYs
// the events into the tier tables, one stream per tier, in time order so
// each leaf fills in turn.
func loadAPIData(ctx context.Context, b *bench, url string, loads []tierLoad) error {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		CREATE TABLE bench_orgs (org_id uuid PRIMARY KEY, plan text NOT NULL, token text NOT NULL, emails text[] NOT NULL);
		CREATE TABLE bench_loaded (scale float8 NOT NULL, schema_hash text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	byTier := map[string][]benchOrg{}
	var orgRows, userRows, memberRows, patRows, benchRows [][]any
	for _, l := range loads {
		for i := range l.orgs {
			o := benchOrg{id: randomUUID(rng).String(), plan: l.tier, token: pat.Generate()}
			if l.big > 0 && i == 0 {
				o.plan = l.bigPlan // on the tier's plan
			}
			orgRows = append(orgRows, []any{o.id, fmt.Sprintf("%s-%d", l.tier, i), l.tier})
			for k := range 5 {
				email := fmt.Sprintf("member%d@%s-%d.example.com", k, l.tier, i)
				user := randomUUID(rng).String()
				o.emails = append(o.emails, email)
				userRows = append(userRows, []any{user, email})
				memberRows = append(memberRows, []any{o.id, user, map[bool]string{true: "owner", false: "member"}[k == 0]})
				if k == 0 {
					patRows = append(patRows, []any{user, "bench", pat.Hash(o.token)})
				}
			}
			byTier[l.tier] = append(byTier[l.tier], o)
			benchRows = append(benchRows, []any{o.id, o.plan, o.token, o.emails})
		}
	}
	for _, c := range []struct {
		table []string
		cols  []string
		rows  [][]any
	}{
		{[]string{"cloud", "orgs"}, []string{"id", "name", "plan"}, orgRows},
		{[]string{"cloud", "users"}, []string{"id", "email"}, userRows},
		{[]string{"cloud", "org_members"}, []string{"org_id", "user_id", "role"}, memberRows},
		{[]string{"cloud", "pats"}, []string{"user_id", "name", "token_hash"}, patRows},
		{[]string{"bench_orgs"}, []string{"org_id", "plan", "token", "emails"}, benchRows},
	} {
		if _, err := conn.CopyFrom(ctx, c.table, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("copy %s: %w", strings.Join(c.table, "."), err)
		}
	}
	for _, l := range loads {
		if _, err := conn.Exec(ctx, "SELECT audit.make_leaf($1, current_date - d) FROM generate_series(-1, $2) d", l.tier, l.days); err != nil {
			return fmt.Errorf("leaves of %s: %w", l.tier, err)
		}
	}
	// The catalog's action, target type and required keys shape the events.
	var actions []store.Action
	rows, err := conn.Query(ctx, "SELECT action, target_type, required_keys FROM audit.actions")
	if err == nil {
		actions, err = pgx.CollectRows(rows, pgx.RowToStructByNameLax[store.Action])
	}
	if err != nil {
		return err
	}

	now := time.Now()
	errc := make(chan error, len(loads))
	for i, l := range loads {
		go func() { errc <- copyEvents(ctx, b, url, l, byTier[l.tier], actions, now, uint64(i)) }()
	}
	for range loads {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	b.logger.Info("sealing the events")
	if err := sealLoaded(ctx, conn); err != nil {
		return err
	}
	b.logger.Info("vacuuming and analysing the tier tables")
	tables := []string{"seals"}
	for _, l := range loads {
		tables = append(tables, "events_"+l.tier)
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit."+t); err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "INSERT INTO bench_loaded (scale, schema_hash) VALUES ($1, $2)", b.scale, schema.Hash())
	return err
}

// sealLoaded gives every loaded event a seal, per org in (occurred_at, id)
// order, as the sealer's first pass would, so that pages and exports read
// seals as they do in production. The hashes are stand-ins (a SHA-256 of
// the event's id, not a chain): what a read costs does not depend on them.
func sealLoaded(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `
		SET maintenance_work_mem = '512MB';
		SET work_mem = '512MB';
		INSERT INTO audit.seals (org_id, seq, occurred_at, event_id, hash, prev_hash)
		SELECT org_id, seq, occurred_at, id, hash,
		       coalesce(lag(hash) OVER (PARTITION BY org_id ORDER BY seq), decode(repeat('00', 32), 'hex'))
		FROM (SELECT org_id, row_number() OVER (PARTITION BY org_id ORDER BY occurred_at, id) AS seq, occurred_at, id,
		             sha256(uuid_send(id)) AS hash
		      FROM audit.stored_events) e;
		INSERT INTO audit.seal_heads (org_id, seq, hash, sealed_at)
		SELECT DISTINCT ON (org_id) org_id, seq, hash, now() FROM audit.seals ORDER BY org_id, seq DESC;
		RESET maintenance_work_mem;
		RESET work_mem`)
	if err != nil {
		return fmt.Errorf("seal the events: %w", err)
	}
	return nil
}

// copyEvents streams a tier's events, newest first, evenly spread over its
// days; its first org gets l.big of them.
func copyEvents(ctx context.Context, b *bench, url string, l tierLoad, orgs []benchOrg, actions []store.Action, now time.Time, seed uint64) error {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rng := rand.New(rand.NewPCG(seed, 99))
	n := int(float64(l.events) * b.scale)
	bigShare := float64(l.big) / float64(l.events)
	span := time.Duration(l.days)*24*time.Hour - time.Hour
	orgIDs := make([]pgtype.UUID, len(orgs))
	for i, o := range orgs {
		orgIDs[i] = pgtype.UUID{Bytes: uuid.MustParse(o.id), Valid: true}
	}
	metadata := []byte(`{"name": "prod-eu-1", "region": "eu-west-1", "changes": {"labels": ["a", "b"]}}`)
	k := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if k == n {
			return nil, nil
		}
		at := now.Add(-time.Minute - time.Duration(float64(span)*float64(k)/float64(n)))
		k++
		if k%1_000_000 == 0 {
			b.logger.Info("loading events", "tier", l.tier, "rows", k)
		}
		o := 0
		if rng.Float64() >= bigShare {
			o = 1 + rng.IntN(len(orgs)-1)
		}
		if bigShare == 0 {
			o = rng.IntN(len(orgs))
		}
		a := actions[rng.IntN(len(actions))]
		id := randomUUID(rng)
		return []any{pgtype.UUID{Bytes: id, Valid: true}, orgIDs[o], at, a.Action, a.TargetType,
			"cl-" + strconv.Itoa(rng.IntN(1000)), "user", orgs[o].emails[rng.IntN(5)],
			netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))}),
			"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
			"req-" + id.String()[:8], metadata}, nil
	})
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"audit", "events_" + l.tier},
		[]string{"id", "org_id", "occurred_at", "action", "target_type", "target_id", "actor_type", "actor_email",
			"ip", "user_agent", "request_id", "metadata"}, src)
	if err != nil {
		return fmt.Errorf("copy %s events: %w", l.tier, err)
	}
	return nil
}

// apiServer is the auditlog binary serving the API as a separate process.
type apiServer struct {
	cmd    *exec.Cmd
	base   string
	client *http.Client
}

// startAPI builds the binary and runs `auditlog serve` as a login role
// holding only audit_reader, with the rate limit lifted.
func (b *bench) startAPI(ctx context.Context, url string) (*apiServer, error) {
	dir, err := os.MkdirTemp("", "auditlog-bench-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "auditlog")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/auditlog/auditlog/cmd/auditlog").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditlog_bench_api') THEN CREATE ROLE auditlog_bench_api LOGIN; END IF;
		END $$; GRANT audit_reader TO auditlog_bench_api`)
	if err != nil {
		return nil, err
	}
	apiURL, err := database.WithUser(url, "auditlog_bench_api", "")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--addr", addr, "--database-url", apiURL, "--rate-limit", "1e9", "--rate-burst", "1000000000", "--no-retention", "--no-sealer", "--no-delivery")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &apiServer{cmd: cmd, base: "http://" + addr, client: &http.Client{Timeout: 10 * time.Minute}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := s.client.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("auditlog serve did not come up: %v", err)
		}
	}
}

func (s *apiServer) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
	_ = os.RemoveAll(filepath.Dir(s.cmd.Path))
}

// get requests path with the org's token and copies the body to w.
func (s *apiServer) get(ctx context.Context, o benchOrg, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// pageFilters are the first pages measured, each over orgs of every plan in
// turn.
var pageFilters = []struct {
	name  string
	query func(o benchOrg, now time.Time) string
}{
	{"no filter", func(benchOrg, time.Time) string { return "" }},
	{"action (exact)", func(benchOrg, time.Time) string { return "action=cluster.created" }},
	{"action (free text)", func(benchOrg, time.Time) string { return "action=token" }},
	{"target_type", func(benchOrg, time.Time) string { return "target_type=pat" }},
	{"actor", func(o benchOrg, _ time.Time) string { return "actor=" + neturl.QueryEscape(o.emails[3]) }},
	{"range=7d", func(benchOrg, time.Time) string { return "range=7d" }},
	{"since/until", func(_ benchOrg, now time.Time) string {
		return "since=" + now.Add(-72*time.Hour).UTC().Format(time.RFC3339) + "&until=" + now.Add(-24*time.Hour).UTC().Format(time.RFC3339)
	}},
	{"target_type+actor+range", func(o benchOrg, _ time.Time) string {
		return "target_type=cluster&range=30d&actor=" + neturl.QueryEscape(o.emails[1])
	}},
}

// floorFilter asks for an action that no event has: the server
// authenticates the token and reads the org's scope, as for every page, and
// then reads no event. Its time is what a page costs on this machine before
// any event is read: the floor under the pages' latencies.
const floorFilter = "action=no-such-action"

// firstPageLatency times first pages (100 events) one request at a time,
// after a warm-up that lets every connection prepare its statements, each
// against the floor (floorFilter) measured the same way just before; goal
// is the p99 each filter should stay under.
func (s *apiServer) firstPageLatency(ctx context.Context, orgs map[string][]benchOrg, goal time.Duration) ([]row, error) {
	floor, err := s.pageLatencies(ctx, orgs, func(benchOrg, time.Time) string { return floorFilter })
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	var rows []row
	for _, f := range pageFilters {
		r, err := s.pageLatencies(ctx, orgs, f.query)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		p99 := r.quantile(0.99)
		rows = append(rows, row{
			benchmark: "API first page (100 events) via HTTP, " + f.name,
			measured:  fmt.Sprintf("p50 %s, p99 %s", ms(r.quantile(0.5)), ms(p99)),
			baseline:  fmt.Sprintf("p50 %s, p99 %s: no event read (%s)", ms(floor.quantile(0.5)), ms(floor.quantile(0.99)), floorFilter),
			ratio:     float64(p99) / float64(floor.quantile(0.99)),
			goal:      fmt.Sprintf("p99 <= %d ms", goal.Milliseconds()),
			met:       ptr(p99 <= goal),
		})
	}
	return rows, nil
}

// pageLatencies are the times of 100 warm-up then 1,000 measured requests
// for first pages with the filter query makes, each for a random org, the
// plans taking turns.
func (s *apiServer) pageLatencies(ctx context.Context, orgs map[string][]benchOrg, query func(benchOrg, time.Time) string) (loadResult, error) {
	const warmup, measured = 100, 1000
	plans := []string{"big", "enterprise", "team", "free"}
	rng := rand.New(rand.NewPCG(7, 7))
	var lat []time.Duration
	for i := range warmup + measured {
		plan := plans[i%len(plans)]
		o := orgs[plan][rng.IntN(len(orgs[plan]))]
		t0 := time.Now()
		if err := s.get(ctx, o, "/api/orgs/"+o.id+"/audit?"+query(o, t0), io.Discard); err != nil {
			return loadResult{}, err
		}
		if i >= warmup {
			lat = append(lat, time.Since(t0))
		}
	}
	slices.Sort(lat)
	return loadResult{latencies: lat}, nil
}

// export streams the big org's events as CSV through the API and with psql
// running the same COPY, interleaved twice, and reads the server's peak RSS.
func (s *apiServer) export(ctx context.Context, url string, big benchOrg) ([]row, error) {
	pid := strconv.Itoa(s.cmd.Process.Pid)
	idle, err := procStatus(pid, "VmRSS")
	if err != nil {
		return nil, err
	}
	// Start the peak afresh: the latency runs are not what is measured.
	if err := os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0); err != nil {
		return nil, fmt.Errorf("reset peak RSS: %w", err)
	}
	psql, err := s.psqlCopy(ctx, url, big)
	if err != nil {
		return nil, err
	}
	var apiRate, psqlRate float64
	var rowsExported int64
	for range 2 {
		n, d, err := timeRows(func(w io.Writer) error { return psql(w) })
		if err != nil {
			return nil, fmt.Errorf("psql: %w", err)
		}
		psqlRate = max(psqlRate, float64(n)/d.Seconds())
		n, d, err = timeRows(func(w io.Writer) error {
			return s.get(ctx, big, "/api/orgs/"+big.id+"/audit?format=csv", w)
		})
		if err != nil {
			return nil, err
		}
		rowsExported = n
		apiRate = max(apiRate, float64(n)/d.Seconds())
	}
	peak, err := procStatus(pid, "VmHWM")
	if err != nil {
		return nil, err
	}
	ratio := apiRate / psqlRate
	return []row{{
		benchmark: fmt.Sprintf("CSV export rows/s via HTTP vs psql COPY of the same select, %d rows", rowsExported),
		measured:  fmt.Sprintf("%.0f rows/s", apiRate),
		baseline:  fmt.Sprintf("%.0f rows/s", psqlRate),
		ratio:     ratio,
		goal:      ">= 0.70",
		met:       ptr(ratio >= 0.7),
	}, {
		benchmark: fmt.Sprintf("API server peak RSS while exporting %d rows", rowsExported),
		measured:  fmt.Sprintf("%.0f MB", float64(peak)/1e6),
		baseline:  fmt.Sprintf("%.0f MB idle", float64(idle)/1e6),
		goal:      "< 100 MB",
		met:       ptr(peak < 100e6),
	}}, nil
}

// psqlCopy returns a function that runs, in psql, the statements the API's
// export runs for org o: for each window, in a transaction, the settings,
// then the same COPY ... TO STDOUT (what psql's \copy sends), writing the
// CSV to w.
func (s *apiServer) psqlCopy(ctx context.Context, url string, o benchOrg) (func(w io.Writer) error, error) {
	bindir, err := pglocal.FindBinDir()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	stmts, err := store.ExportStatements(store.Query{
		OrgID: o.id, Tiers: []string{"enterprise"}, Since: now.Add(-365 * 24 * time.Hour),
		Before: store.Position{OccurredAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ID: store.MinID}, Now: now,
	})
	if err != nil {
		return nil, err
	}
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url}
	var script strings.Builder
	for j, st := range stmts {
		var sets []string
		for i, name := range slices.Sorted(maps.Keys(st.Settings)) {
			args = append(args, "-v", fmt.Sprintf("n%d_%d=%s", j, i, name), "-v", fmt.Sprintf("v%d_%d=%s", j, i, st.Settings[name]))
			sets = append(sets, fmt.Sprintf("set_config(:'n%d_%d', :'v%d_%d', true)", j, i, j, i))
		}
		script.WriteString("BEGIN READ ONLY;\n\\o /dev/null\nSELECT " + strings.Join(sets, ", ") + ";\n\\o\n" +
			strings.ReplaceAll(st.SQL, "\n", " ") + ";\nCOMMIT;\n")
	}
	return func(w io.Writer) error {
		cmd := exec.CommandContext(ctx, filepath.Join(bindir, "psql"), args...)
		cmd.Stdin = strings.NewReader(script.String())
		cmd.Stdout = w
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%v: %s", err, stderr.String())
		}
		return nil
	}, nil
}

// timeRows runs f with a writer that counts CSV rows (lines; the bench data
// has no newline inside a cell), less the header.
func timeRows(f func(io.Writer) error) (int64, time.Duration, error) {
	var c lineCounter
	start := time.Now()
	err := f(&c)
	return c.lines - 1, time.Since(start), err
}

type lineCounter struct{ lines int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// procStatus reads a size field (kB) of /proc/PID/status, in bytes.
func procStatus(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%s/status", field, pid)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func randomUUID(rng *rand.Rand) uuid.UUID {
	var u uuid.UUID
	for i := 0; i < 16; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
