package importer_test

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/importer"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// bundle is a migrated database with an org on each plan, a user, and a
// connection as a member of audit_maintainer.
type bundle struct {
	url        string
	pool       *pgxpool.Pool // superuser, to look
	maintainer *pgx.Conn
	free, team string // org ids
	enterprise string
	userID     string
	userEmail  string
}

func setup(t *testing.T) bundle {
	t.Helper()
	url := testdb.New(t)
	b := bundle{url: url, pool: testdb.Pool(t, url)}
	b.free = fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "free"})
	b.team = fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "team"})
	b.enterprise = fixture.Org(t, b.pool, fixture.OrgOpts{Plan: "enterprise"})
	b.userID, b.userEmail = fixture.User(t, b.pool, fixture.UserOpts{OrgID: b.team, Role: "owner"})
	b.maintainer = connect(t, testdb.Role(t, url, "audit_maintainer"))
	return b
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// storedIn returns the events of the bundle's orgs in a tier table, oldest first.
func storedIn(t *testing.T, b bundle, tier string) []fixture.StoredEvent {
	t.Helper()
	return fixture.Events(t, b.pool, "audit.events_"+tier, b.free, b.team, b.enterprise)
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM audit.events_free)
		+ (SELECT count(*) FROM audit.events_team) + (SELECT count(*) FROM audit.events_enterprise)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func run(t *testing.T, db importer.DB, input string, o importer.Options) importer.Report {
	t.Helper()
	rep, err := importer.Import(context.Background(), db, strings.NewReader(input), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// ndjson writes one line per event.
func ndjson(t *testing.T, events ...map[string]any) string {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// goodEvents are four events of three orgs, exercising every column: ids
// given or not, an actor by id only (email looked up), a PAT, a system event.
func goodEvents(b bundle, now time.Time) []map[string]any {
	return []map[string]any{
		{"id": "0b5f7c62-4a8e-4d55-9f0e-1a2b3c4d5e6f", "org_id": b.team, "occurred_at": ts(now.Add(-20 * 24 * time.Hour)),
			"action": "cluster.created", "target_type": "cluster", "target_id": "cl_1", "actor_type": "user",
			"actor_id": b.userID, "actor_email": b.userEmail, "ip": "2001:db8::7", "user_agent": "Mozilla/5.0",
			"request_id": "req_1", "metadata": map[string]any{"name": "prod", "region": "eu-west-1"}},
		{"org_id": b.team, "occurred_at": ts(now.Add(-2 * time.Hour)), "action": "cluster.token_rotated",
			"target_id": "cl_1", "actor_id": b.userID, "ip": "198.51.100.7",
			"metadata": map[string]any{"via_pat": "terraform"}},
		{"org_id": b.free, "occurred_at": ts(now.Add(-6 * 24 * time.Hour)), "action": "auth.signout", "metadata": nil},
		{"org_id": b.enterprise, "occurred_at": ts(now.Add(-300 * 24 * time.Hour)), "action": "billing.subscription_changed",
			"actor_email": "billing@example.com", "metadata": map[string]any{"subscription_id": "sub_9", "previous_plan": "team",
				"new_plan": "enterprise", "previous_quantity": 3, "new_quantity": 10}},
	}
}

// assertGoodEventsStored checks each of goodEvents is in its org's tier
// table with every column as given, or as derived where it was left out.
func assertGoodEventsStored(t *testing.T, b bundle, now time.Time) {
	t.Helper()
	team := storedIn(t, b, "team")
	free := storedIn(t, b, "free")
	enterprise := storedIn(t, b, "enterprise")
	if len(team) != 2 || len(free) != 1 || len(enterprise) != 1 {
		t.Fatalf("stored %d team, %d free, %d enterprise events; want 2, 1, 1", len(team), len(free), len(enterprise))
	}
	first := team[0]
	if first.ID != "0b5f7c62-4a8e-4d55-9f0e-1a2b3c4d5e6f" || first.OrgID != b.team ||
		!first.OccurredAt.Equal(now.Add(-20*24*time.Hour).Truncate(time.Microsecond)) ||
		first.Action != "cluster.created" || first.TargetType != "cluster" || *first.TargetID != "cl_1" ||
		first.ActorType != "user" || *first.ActorID != b.userID || *first.ActorEmail != b.userEmail ||
		first.IP.String() != "2001:db8::7" || *first.UserAgent != "Mozilla/5.0" || *first.RequestID != "req_1" ||
		first.Metadata["name"] != "prod" || first.Metadata["region"] != "eu-west-1" {
		t.Errorf("first event stored as %+v", first)
	}
	second := team[1]
	if second.TargetType != "cluster" || second.ActorType != "user" || second.ActorEmail == nil ||
		*second.ActorEmail != b.userEmail || second.Metadata["via_pat"] != "terraform" || second.IP.String() != "198.51.100.7" {
		t.Errorf("second event (target type, actor type and email derived) stored as %+v", second)
	}
	if s := free[0]; s.ActorType != "system" || s.ActorEmail != nil || len(s.Metadata) != 0 || s.TargetType != "auth" {
		t.Errorf("system event stored as %+v", s)
	}
	if e := enterprise[0]; e.Metadata["new_quantity"] != 10.0 || *e.ActorEmail != "billing@example.com" {
		t.Errorf("enterprise event stored as %+v", e)
	}
}

// NDJSON as the API's export writes it: each event with its sentence and
// its seal, which the import skips, and the manifest as the last line,
// skipped too.
func TestImportNDJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	events := goodEvents(b, now)
	events[0]["seq"], events[0]["hash"], events[0]["prev_hash"] = 7, strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	events[1]["seq"], events[1]["hash"], events[1]["prev_hash"] = nil, nil, nil
	events[0]["sentence"], events[1]["sentence"] = "ann@example.com signed in with password", ""
	input := ndjson(t, events...) + "\n" + `{"manifest": {"org_id": "` + b.team + `", "rows": 4}}`
	rep := run(t, b.maintainer, "\n"+input+"\n\n", importer.Options{})
	if rep.Rows != 4 || rep.Loaded != 4 || rep.Refused != 0 || len(rep.Problems) != 0 || rep.Batches != 1 {
		t.Fatalf("report %+v", rep)
	}
	assertGoodEventsStored(t, b, now)
}

// The CSV of the API's export: a header row in any order, RFC 4180 quoting,
// formula cells neutralised with a leading quote, empty cells for none, and
// the sentence's and the seal's cells, which the import skips.
func TestImportCSV(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	var csv strings.Builder
	csv.WriteString("action,org_id,occurred_at,id,target_type,target_id,actor_type,actor_id,actor_email,ip,user_agent,request_id,metadata,sentence,seq,hash,prev_hash\n")
	for _, e := range goodEvents(b, now) {
		cell := func(k string) string {
			v, ok := e[k]
			if !ok || v == nil {
				return ""
			}
			if s, ok := v.(string); ok {
				return s
			}
			j, _ := json.Marshal(v)
			return `"` + strings.ReplaceAll(string(j), `"`, `""`) + `"`
		}
		fmt.Fprintf(&csv, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,\"someone did, \"\"this\"\"\",,,\r\n", cell("action"), cell("org_id"), cell("occurred_at"),
			cell("id"), cell("target_type"), cell("target_id"), cell("actor_type"), cell("actor_id"), cell("actor_email"),
			cell("ip"), cell("user_agent"), cell("request_id"), cell("metadata"))
	}
	// A neutralised formula cell comes back as it was (in an org of its own).
	other := fixture.Org(t, b.pool, fixture.OrgOpts{})
	fmt.Fprintf(&csv, "auth.signin,%s,%s,,,'=cmd|' /C calc'!A0,,,,,'-evil,'@x,\"{\"\"method\"\": \"\"password\"\"}\",'=x signed in,3,%s,%s\n",
		other, ts(now.Add(-time.Hour)), strings.Repeat("ab", 32), strings.Repeat("cd", 32))

	rep := run(t, b.maintainer, csv.String(), importer.Options{Format: importer.FormatCSV})
	if rep.Rows != 5 || rep.Loaded != 5 || len(rep.Problems) != 0 {
		t.Fatalf("report %+v", rep)
	}
	assertGoodEventsStored(t, b, now)
	var target, ua, req string
	err := b.pool.QueryRow(context.Background(), "SELECT target_id, user_agent, request_id FROM audit.events_free WHERE org_id = $1", other).Scan(&target, &ua, &req)
	if err != nil || target != "=cmd|' /C calc'!A0" || ua != "-evil" || req != "@x" {
		t.Fatalf("neutralised cells stored as %q %q %q (%v)", target, ua, req, err)
	}
}

// badCase is a row that breaks one rule, and the code it must be refused with.
type badCase struct {
	name  string
	event map[string]any
	code  string
}

func badCases(b bundle, now time.Time) []badCase {
	at := ts(now.Add(-time.Hour))
	return []badCase{
		{"unknown org", map[string]any{"org_id": "00000000-0000-4000-8000-000000000000", "occurred_at": at, "action": "auth.signout"}, "AL001"},
		{"unknown action", map[string]any{"org_id": b.team, "occurred_at": at, "action": "cluster.exploded"}, "AL002"},
		{"metadata an array", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "metadata": []int{1}}, "AL003"},
		{"required key missing", map[string]any{"org_id": b.team, "occurred_at": at, "action": "org_member.joined", "metadata": map[string]any{"role": "admin"}}, "AL004"},
		{"target id too long", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "target_id": strings.Repeat("x", 257)}, "AL005"},
		{"PAT name too long", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "metadata": map[string]any{"via_pat": strings.Repeat("p", 101)}}, "AL005"},
		{"PAT name an object", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "metadata": map[string]any{"via_pat": map[string]any{"name": "ci"}}}, "AL005"},
		// Compressible, so stored compressed in the staging table: measured as log_event measures it.
		{"metadata too big", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "metadata": map[string]any{"blob": strings.Repeat("ab", 9000)}}, "AL005"},
		{"malformed email", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "actor_email": "not-an-email"}, "AL006"},
		{"no org", map[string]any{"occurred_at": at, "action": "auth.signout"}, "AL007"},
		{"no action", map[string]any{"org_id": b.team, "occurred_at": at}, "AL007"},
		{"no time", map[string]any{"org_id": b.team, "action": "auth.signout"}, "AL007"},
		{"in the future", map[string]any{"org_id": b.team, "occurred_at": ts(now.Add(time.Hour)), "action": "auth.signout"}, "AL021"},
		{"wrong target type", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "target_type": "cluster"}, "AL022"},
		{"wrong actor type", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "actor_type": "user"}, "AL023"},
		{"org not a UUID", map[string]any{"org_id": "acme", "occurred_at": at, "action": "auth.signout"}, "22P02"},
		{"time without zone", map[string]any{"org_id": b.team, "occurred_at": "2026-01-02 03:04:05", "action": "auth.signout"}, "22P02"},
		{"ip not an address", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "ip": "10.0.0.300"}, "22P02"},
		{"column a number", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "target_id": 7}, "22P02"},
		{"unknown column", map[string]any{"org_id": b.team, "occurred_at": at, "action": "auth.signout", "colour": "blue"}, "22P02"},
	}
}

// A file with bad rows loads nothing, and the report names every bad line
// with its SQLSTATE and reason.
func TestImportBadRowsLoadNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	cases := badCases(b, now)
	// Good and bad rows interleaved, then the same event twice, then a line
	// that is not JSON at all.
	var events []map[string]any
	want := map[int64]string{}
	for i, c := range cases {
		good := map[string]any{"org_id": b.team, "occurred_at": ts(now.Add(-time.Duration(i+1) * time.Minute)), "action": "auth.signout"}
		events = append(events, good, c.event)
		want[int64(2*i+2)] = c.code
	}
	twice := goodEvents(b, now)[0]
	events = append(events, twice, twice)
	want[int64(len(events))] = "AL024"
	input := ndjson(t, events...) + "{not json\n"
	want[int64(len(events)+1)] = "22P02"

	rep := run(t, b.maintainer, input, importer.Options{BatchSize: 1000})
	if n := count(t, b.pool); n != 0 {
		t.Fatalf("%d events loaded from a file with bad rows", n)
	}
	if rep.Loaded != 0 || rep.Refused != int64(len(events)+1) || rep.RefusedBatches != 1 {
		t.Errorf("report %+v", rep)
	}
	got := map[int64]string{}
	for _, p := range rep.Problems {
		got[p.Line] = p.Code
		if p.Reason == "" {
			t.Errorf("line %d: no reason", p.Line)
		}
	}
	for line, code := range want {
		if got[line] != code {
			name := "the same event twice, or not JSON"
			if i := int(line/2 - 1); line%2 == 0 && i < len(cases) {
				name = cases[i].name
			}
			t.Errorf("line %d (%s): reported %q, want %s", line, name, got[line], code)
		}
	}
	if len(got) != len(want) {
		t.Errorf("reported %d bad lines, want %d: %v", len(got), len(want), rep.Problems)
	}
	if !slices.IsSortedFunc(rep.Problems, func(a, b importer.Problem) int { return int(a.Line - b.Line) }) {
		t.Error("problems not in line order")
	}
}

// A byte PostgreSQL cannot store (a NUL in text or in jsonb, invalid UTF-8)
// and an NDJSON line over 1 MiB are bad rows like any other: reported with
// their line, and the import reads on to the end.
func TestImportBadBytesAreRowProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := ts(time.Now().Add(-time.Hour))
	good := fmt.Sprintf(`{"org_id": %q, "occurred_at": %q, "action": "auth.signout"}`, b.team, at)
	withField := func(field string) string { return strings.TrimSuffix(good, "}") + ", " + field + "}" }
	ndjsonLines := []string{
		good,
		withField(`"target_id": "a\u0000b"`),
		withField(`"metadata": {"note": "a\u0000b"}`),
		withField(`"metadata": {"a\u0000": 1}`),
		withField(`"user_agent": "` + strings.Repeat("x", 1<<20) + `"`),
		withField(`"metadata": {"note": "a\\u0000b"}`), // a backslash, then u0000: fine
	}
	header := "org_id,occurred_at,action,user_agent,actor_email,metadata\n"
	row := func(ua, email, metadata string) string {
		return fmt.Sprintf("%s,%s,auth.signout,%s,%s,%s\n", b.team, at, ua, email, metadata)
	}
	for _, c := range []struct {
		name    string
		input   string
		format  importer.Format
		stored  int64
		badLine []int64
	}{
		{"ndjson", strings.Join(ndjsonLines, "\n") + "\n", importer.FormatNDJSON, 2, []int64{2, 3, 4, 5}},
		{"ndjson, the long line last", good + "\n" + ndjsonLines[4], importer.FormatNDJSON, 1, []int64{2}},
		{"csv", header + row("ok", "", "") + row("bad\xff", "", "") + row("", "a\x00@example.com", "") +
			row("", "", "\"{\"\"k\"\": \"\"\xfe\"\"}\"") + row("", "", `"{""k"": ""a\u0000""}"`) + row("ok", "", ""),
			importer.FormatCSV, 2, []int64{3, 4, 5, 6}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := run(t, b.maintainer, c.input, importer.Options{Format: c.format, BatchSize: 1})
			var lines []int64
			for _, p := range rep.Problems {
				lines = append(lines, p.Line)
				if p.Code != "22P02" || p.Reason == "" {
					t.Errorf("problem %v: want 22P02 and a reason", p)
				}
			}
			// The good rows are the same event: stored once, then found again.
			if stored := rep.Loaded + rep.Duplicates; !slices.Equal(lines, c.badLine) || stored != c.stored {
				t.Errorf("stored %d, problems %v: want %d stored, lines %v", stored, rep.Problems, c.stored, c.badLine)
			}
		})
	}
}

// A batch size below zero or over the maximum is refused before anything is
// read, rather than looping on batches of nothing.
func TestImportRefusesBadBatchSize(t *testing.T) {
	t.Parallel()
	for _, size := range []int{-1, importer.MaxBatchSize + 1} {
		_, err := importer.Import(context.Background(), nil, strings.NewReader("{}\n"), importer.Options{BatchSize: size})
		if !errors.Is(err, importer.ErrBatchSize) {
			t.Errorf("batch size %d: %v, want %v", size, err, importer.ErrBatchSize)
		}
	}
}

// Each batch is all or nothing on its own: the batch holding the bad row is
// refused, the others load.
func TestImportRefusesOnlyTheBadBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	var events []map[string]any
	for i := range 9 {
		events = append(events, map[string]any{"org_id": b.team, "occurred_at": ts(now.Add(-time.Duration(i+1) * time.Minute)), "action": "auth.signout"})
	}
	events[4]["action"] = "auth.signin" // line 5, batch 2 (lines 4-6): no method
	rep := run(t, b.maintainer, ndjson(t, events...), importer.Options{BatchSize: 3})
	if rep.Batches != 3 || rep.RefusedBatches != 1 || rep.Loaded != 6 || rep.Refused != 3 || count(t, b.pool) != 6 {
		t.Fatalf("report %+v, %d stored", rep, count(t, b.pool))
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Line != 5 || rep.Problems[0].Code != "AL004" ||
		!strings.Contains(rep.Problems[0].Reason, "missing: method") {
		t.Fatalf("problems %v", rep.Problems)
	}
}

// Rows older than their org's plan retains are skipped, with the reason;
// rows already stored are skipped, so an import can run again.
func TestImportSkipsExpiredAndAlreadyStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	events := []map[string]any{
		{"org_id": b.free, "occurred_at": ts(now.Add(-8 * 24 * time.Hour)), "action": "auth.signout"},                                                // free keeps 7 days
		{"org_id": b.free, "occurred_at": ts(now.Add(-6 * 24 * time.Hour)), "action": "auth.signout"},                                                // kept
		{"org_id": b.team, "occurred_at": ts(now.Add(-31 * 24 * time.Hour)), "action": "auth.signout"},                                               // team keeps 30
		{"id": "5e0c2f0e-8d51-4d0e-9c8e-000000000001", "org_id": b.team, "occurred_at": ts(now.Add(-29 * 24 * time.Hour)), "action": "auth.signout"}, // kept
	}
	input := ndjson(t, events...)
	rep := run(t, b.maintainer, input, importer.Options{})
	if rep.Loaded != 2 || rep.Expired != 2 || rep.Duplicates != 0 || len(rep.Skips) != 2 {
		t.Fatalf("first run: %+v", rep)
	}
	if s := rep.Skips[0]; s.Line != 1 || !strings.Contains(s.Reason, "older than the free plan retains (7 days)") {
		t.Errorf("skip reported as %v", s)
	}
	rep = run(t, b.maintainer, input, importer.Options{})
	if rep.Loaded != 0 || rep.Expired != 2 || rep.Duplicates != 2 || count(t, b.pool) != 2 {
		t.Fatalf("second run: %+v; %d stored", rep, count(t, b.pool))
	}
	for i, line := range []int64{2, 4} {
		if s := rep.Skips[2+i]; s.Line != line || !strings.Contains(s.Reason, "already stored") {
			t.Errorf("duplicate of line %d reported as %v", line, s)
		}
	}
}

// The import applies log_event's rules: an event log_event refuses is
// refused by the import with the same SQLSTATE and message.
func TestImportRulesAreLogEventRules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	for _, c := range badCases(b, now) {
		if !strings.HasPrefix(c.code, "AL00") || c.event["occurred_at"] == nil {
			continue // the rules of imported rows only
		}
		_, logErr := auditlog.Log(ctx, b.pool, asLogged(c.event))
		var pgErr *pgconn.PgError
		if !errors.As(logErr, &pgErr) {
			t.Errorf("%s: log_event accepted it: %v", c.name, logErr)
			continue
		}
		rep := run(t, b.maintainer, ndjson(t, c.event), importer.Options{})
		if len(rep.Problems) != 1 || rep.Problems[0].Code != pgErr.Code ||
			"audit.log_event: "+rep.Problems[0].Reason != pgErr.Message {
			t.Errorf("%s: log_event says %s %q, the import %v", c.name, pgErr.Code, pgErr.Message, rep.Problems)
		}
	}
}

// asLogged is the event of an import row as application code would record
// it: the actor's email and PAT as the actor, not as columns and metadata.
func asLogged(row map[string]any) auditlog.Event {
	str := func(k string) string { s, _ := row[k].(string); return s }
	e := auditlog.Event{OrgID: str("org_id"), Action: auditlog.Action(str("action")), TargetID: str("target_id"), Metadata: row["metadata"]}
	if email := str("actor_email"); email != "" {
		e.Actor = &auditlog.Actor{Email: email}
	}
	// A via_pat that is not a string stays in the metadata, as only there can it be one.
	if m, ok := row["metadata"].(map[string]any); ok {
		if viaPAT, ok := m["via_pat"].(string); ok {
			rest := maps.Clone(m)
			delete(rest, "via_pat")
			e.Metadata, e.Actor = rest, &auditlog.Actor{ViaPAT: viaPAT}
		}
	}
	return e
}

//go:embed testdata/csv_cell.sql
var csvCellSQL string

//go:embed testdata/export.sql
var exportSQL string

// export writes an org's events as the API's CSV export does.
func export(t *testing.T, url, org string) []byte {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, csvCellSQL); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT set_config('test.org_id', $1, false)", org); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, exportSQL); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// An org's CSV export imported into a fresh database exports the same.
func TestImportRoundTripsTheAPIExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	org := b.team
	// Recorded now, through log_event: every column, and cells a
	// spreadsheet would run, which the export neutralises.
	for i, c := range []auditlog.Context{
		{Actor: auditlog.Actor{ID: b.userID}, IP: netip.MustParseAddr("203.0.113.9"), UserAgent: "=HYPERLINK(\"http://x\")", RequestID: "-1"},
		{Actor: auditlog.Actor{Email: "+ops@example.com", ViaPAT: "ci"}, UserAgent: "\tradar-cli/2.1, \"quoted\"", RequestID: "@req"},
		{},
	} {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			if err := auditlog.SetContext(ctx, tx, c); err != nil {
				return err
			}
			_, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.ClusterUpdated, TargetID: fmt.Sprintf("@cl_%d", i),
				Metadata: map[string]any{"changes": map[string]any{"name": []string{"a,b", "line\nbreak"}}}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Older history, as imported.
	for d := 1; d < 30; d += 3 {
		fixture.Event(t, b.pool, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Duration(d) * 24 * time.Hour),
			ActorEmail: "ann@example.com", Action: "auth.signin", Metadata: `{"method": "sso"}`})
	}
	first := export(t, b.url, org)

	fresh := testdb.New(t)
	if _, err := testdb.Pool(t, fresh).Exec(ctx, "INSERT INTO cloud.orgs (id, name, plan) VALUES ($1, 'copy', 'team')", org); err != nil {
		t.Fatal(err)
	}
	rep := run(t, connect(t, testdb.Role(t, fresh, "audit_maintainer")), string(first), importer.Options{})
	if rep.Loaded != 13 || len(rep.Problems) != 0 {
		t.Fatalf("import of the export: %+v", rep)
	}
	second := export(t, fresh, org)
	if !bytes.Equal(first, second) {
		t.Fatalf("round trip differs:\n--- exported\n%s\n--- exported again after import\n%s", first, second)
	}
	if !bytes.Contains(first, []byte("'=HYPERLINK")) || !bytes.Contains(first, []byte("'+ops@example.com")) {
		t.Fatalf("the export did not neutralise formula cells; the test proves less than it says:\n%s", first)
	}
}

// Only members of audit_maintainer may import; the Go side says so, and the
// database refuses the functions to anyone else even if asked directly.
func TestImportRefusesOtherRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	input := ndjson(t, map[string]any{"org_id": b.team, "occurred_at": ts(time.Now().Add(-time.Minute)), "action": "auth.signout"})
	for _, group := range []string{"audit_writer", "audit_reader"} {
		conn := connect(t, testdb.Role(t, b.url, group))
		_, err := importer.Import(ctx, conn, strings.NewReader(input), importer.Options{})
		if !errors.Is(err, importer.ErrNotMaintainer) {
			t.Errorf("%s: got %v, want ErrNotMaintainer", group, err)
		}
		for _, sql := range []string{"SELECT audit.import_begin()", "SELECT * FROM audit.import_batch()", "SELECT * FROM audit.import_checked()"} {
			_, err := conn.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s: %s: got %v, want permission denied", group, sql, err)
			}
		}
	}
	if count(t, b.pool) != 0 {
		t.Fatal("an event was loaded")
	}
}

// The maintainer may only put rows in its staging table: not read it, not
// read or change the tier tables, not swap in a staging table of its own.
func TestMaintainerMayOnlyStage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := b.maintainer
	tryAs := func(sql string) error {
		tx, err := m.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT audit.import_begin()"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, sql)
		return err
	}
	if err := tryAs(fmt.Sprintf("INSERT INTO pg_temp.import_rows (line, org_id) VALUES (1, '%s')", b.team)); err != nil {
		t.Errorf("staging a row refused: %v", err)
	}
	for _, sql := range []string{
		"SELECT * FROM pg_temp.import_rows",
		"DELETE FROM pg_temp.import_rows",
		"TRUNCATE pg_temp.import_rows",
		"DROP TABLE pg_temp.import_rows",
		"ALTER TABLE pg_temp.import_rows ADD COLUMN x int",
		"SELECT * FROM audit.import_checked()",
		fmt.Sprintf("INSERT INTO audit.events_team (id, org_id, occurred_at, action, target_type, actor_type, metadata) VALUES (gen_random_uuid(), '%s', now(), 'auth.signout', 'auth', 'system', '{}')", b.team),
	} {
		var pgErr *pgconn.PgError
		if err := tryAs(sql); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: got %v, want refused", sql, err)
		}
	}

	// A staging table of the maintainer's own making, say a view that would
	// run its code as audit_owner, is refused.
	other := connect(t, testdb.Role(t, b.url, "audit_maintainer"))
	if _, err := other.Exec(ctx, "CREATE TEMP VIEW import_rows AS SELECT 1 AS line"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"SELECT audit.import_begin()", "SELECT * FROM audit.import_batch()"} {
		var pgErr *pgconn.PgError
		if _, err := other.Exec(ctx, sql); !errors.As(err, &pgErr) || pgErr.Code != "AL020" {
			t.Errorf("%s with the maintainer's own import_rows: got %v, want AL020", sql, err)
		}
	}
}

// An event already stored in a tier table other than its org's plan's is
// skipped too, not stored a second time in the plan's: after a plan change
// the org's events stay in the old plan's table until the retention worker
// moves them, and a late write can put one there even after that.
func TestImportSkipsEventsStoredInAnotherTier(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	imported := map[string]any{"id": "7d3c1e2a-5b6f-4c8d-9e0f-1a2b3c4d5e01", "org_id": b.free,
		"occurred_at": ts(now.Add(-2 * 24 * time.Hour)), "action": "auth.signout"}
	if rep := run(t, b.maintainer, ndjson(t, imported), importer.Options{}); rep.Loaded != 1 {
		t.Fatalf("first import: %+v", rep)
	}
	// The free org moves to team: its event stays in audit.events_free until re-tiered.
	if _, err := b.pool.Exec(ctx, "UPDATE cloud.orgs SET plan = 'team' WHERE id = $1", b.free); err != nil {
		t.Fatal(err)
	}
	// The team org has an event in audit.events_free with no plan change pending.
	lateAt := now.Add(-3 * 24 * time.Hour)
	lateID := fixture.Event(t, b.pool, fixture.EventOpts{OrgID: b.team, Tier: "free", OccurredAt: lateAt})
	late := map[string]any{"id": lateID, "org_id": b.team, "occurred_at": ts(lateAt), "action": "auth.signout"}
	fresh := map[string]any{"org_id": b.free, "occurred_at": ts(now.Add(-time.Hour)), "action": "auth.signout"}

	rep := run(t, b.maintainer, ndjson(t, imported, late, fresh), importer.Options{})
	if rep.Loaded != 1 || rep.Duplicates != 2 || rep.Refused != 0 {
		t.Fatalf("import again after the plan change: %+v", rep)
	}
	for i, s := range rep.Skips {
		if s.Line != int64(i+1) || !strings.Contains(s.Reason, "already stored") {
			t.Errorf("skip %d reported as %v, want line %d already stored", i, s, i+1)
		}
	}
	if free, team := storedIn(t, b, "free"), storedIn(t, b, "team"); len(free) != 2 || len(team) != 1 || team[0].OrgID != b.free {
		t.Fatalf("stored %d events in free, %d in team (%+v); want the 2 stored before in free, the fresh one in team", len(free), len(team), team)
	}
	var shown int
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM audit.events WHERE id = ANY ($1::uuid[])",
		[]string{imported["id"].(string), lateID}).Scan(&shown); err != nil || shown != 2 {
		t.Fatalf("audit.events shows the two events %d times (%v), want once each", shown, err)
	}
}

// A row without an id gets one derived from its content, so importing a
// file again skips the rows already stored instead of storing them twice;
// rows that differ in any value are distinct events, and the id does not
// depend on how the file writes a value.
func TestImportRowsWithoutIDAreStoredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	row := func(change func(map[string]any)) map[string]any {
		r := map[string]any{"org_id": b.team, "occurred_at": ts(at), "action": "auth.signin", "actor_email": b.userEmail,
			"ip": "198.51.100.7", "request_id": "req_1", "metadata": map[string]any{"method": "sso", "provider": "okta"}}
		if change != nil {
			change(r)
		}
		return r
	}
	rows := []map[string]any{
		row(nil),
		row(func(r map[string]any) { r["occurred_at"] = ts(at.Add(time.Microsecond)) }),
		row(func(r map[string]any) { r["metadata"] = map[string]any{"method": "password"} }),
		row(func(r map[string]any) { r["request_id"] = "req_2" }),
		row(func(r map[string]any) { r["actor_email"] = "other@example.com" }),
		row(func(r map[string]any) { r["ip"] = nil }),
	}
	input := ndjson(t, rows...)
	if rep := run(t, b.maintainer, input, importer.Options{}); rep.Loaded != 6 || len(rep.Problems) != 0 {
		t.Fatalf("first import: %+v", rep)
	}
	stored := storedIn(t, b, "team")
	ids := map[string]bool{}
	for _, e := range stored {
		ids[e.ID] = true
	}
	if len(stored) != 6 || len(ids) != 6 {
		t.Fatalf("stored %d events with %d ids, want 6 distinct", len(stored), len(ids))
	}

	rep := run(t, b.maintainer, input, importer.Options{BatchSize: 4})
	if rep.Loaded != 0 || rep.Duplicates != 6 || count(t, b.pool) != 6 {
		t.Fatalf("the same file again: %+v; %d stored, want 6", rep, count(t, b.pool))
	}

	// The same rows as CSV: the time in PostgreSQL's notation, the metadata
	// keys in another order, columns the row leaves to be derived written out.
	var csv strings.Builder
	csv.WriteString("org_id,occurred_at,action,target_type,actor_type,actor_email,ip,request_id,metadata\n")
	for _, r := range rows {
		when, _ := time.Parse(time.RFC3339Nano, r["occurred_at"].(string))
		meta := `"{""provider"":""okta"",  ""method"":""sso""}"`
		if m := r["metadata"].(map[string]any); m["provider"] == nil {
			meta = `"{""method"": ""password""}"`
		}
		ip, _ := r["ip"].(string)
		fmt.Fprintf(&csv, "%s,%s,auth.signin,auth,user,%s,%s,%s,%s\n", r["org_id"], when.In(time.FixedZone("", 2*3600)).Format("2006-01-02 15:04:05.999999-07"),
			r["actor_email"], ip, r["request_id"], meta)
	}
	rep = run(t, b.maintainer, csv.String(), importer.Options{})
	if rep.Loaded != 0 || rep.Duplicates != 6 || len(rep.Problems) != 0 {
		t.Fatalf("the same rows as CSV: %+v", rep)
	}
}

// Two rows without ids alike in every value are one event: in one batch
// they are refused like any event given twice, naming the first.
func TestImportRowsWithoutIDAlikeAreOneEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e := map[string]any{"org_id": b.team, "occurred_at": ts(time.Now().Add(-time.Hour)), "action": "auth.signout"}
	rep := run(t, b.maintainer, ndjson(t, e, e), importer.Options{})
	if rep.Loaded != 0 || len(rep.Problems) != 1 || rep.Problems[0].Line != 2 || rep.Problems[0].Code != "AL024" ||
		!strings.Contains(rep.Problems[0].Reason, "line 1") {
		t.Fatalf("report %+v", rep)
	}
}

// The id of a row without one is a function of its values alone, the same
// in every database and every release (a file imported before an upgrade
// and again after must find its rows stored), and the import gives a row
// exactly that id.
func TestImportIDFromContentIsStable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const idSQL = `SELECT audit.event_content_id($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	var got string
	err := b.pool.QueryRow(ctx, idSQL, "c0ffee00-0000-4000-8000-000000000001", "2026-01-02T03:04:05.123456Z", "cluster.created",
		"cl_1", nil, "ann@example.com", "2001:db8::7", "Mozilla/5.0", "req_1", `{"name": "prod", "region": "eu-west-1"}`).Scan(&got)
	if err != nil {
		t.Fatal(err)
	}
	const want = "d4ee58c2-6972-85e8-83c8-f0fc48ce2a1a"
	if got != want {
		t.Errorf("audit.event_content_id gives %s, want %s: the id derived from a row's content changed, so files imported before would be stored twice", got, want)
	}

	e := map[string]any{"org_id": b.team, "occurred_at": ts(time.Now().Add(-time.Hour).Truncate(time.Microsecond)), "action": "cluster.created",
		"target_id": "cl_1", "actor_id": b.userID, "ip": "2001:db8::7", "user_agent": "Mozilla/5.0", "request_id": "req_1",
		"metadata": map[string]any{"name": "prod", "region": "eu-west-1"}}
	if rep := run(t, b.maintainer, ndjson(t, e), importer.Options{}); rep.Loaded != 1 {
		t.Fatalf("report %+v", rep)
	}
	stored := storedIn(t, b, "team")[0]
	if err := b.pool.QueryRow(ctx, idSQL, e["org_id"], e["occurred_at"], e["action"], e["target_id"], e["actor_id"], nil,
		e["ip"], e["user_agent"], e["request_id"], `{"name": "prod", "region": "eu-west-1"}`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if stored.ID != got {
		t.Fatalf("imported with id %s, want audit.event_content_id of its values, %s", stored.ID, got)
	}
}
