package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/store"
)

// eventColumns are the event column names of docs/api.md, as the JSON and the
// CSV header use them.
func eventColumns() []string {
	var cols []string
	for f := range reflect.TypeFor[store.Event]().Fields() {
		cols = append(cols, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return cols
}

// TestCSVParsesBackToTheEvents records events whose fields hold quotes,
// commas, newlines, unicode, nested JSON and would-be formulas, exports
// them, parses the CSV with a standard reader and compares every cell with
// the JSON page: equal, except formulas, which carry a leading quote.
func TestCSVParsesBackToTheEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	org, token := b.owner(t, "team")
	record := func(c auditlog.Context, e auditlog.Event) {
		t.Helper()
		tx, err := b.admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := auditlog.SetContext(ctx, tx, c); err != nil {
			t.Fatal(err)
		}
		e.OrgID = org
		if _, err := auditlog.Log(ctx, tx, e); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	record(auditlog.Context{
		Actor:     auditlog.Actor{Email: "=cmd|'/Ccalc'!A0@example.com", ViaPAT: "ci, \"nightly\""},
		IP:        netip.MustParseAddr("203.0.113.9"),
		UserAgent: "Mozilla/5.0 (\"quoted\", with commas)\nand a second line",
		RequestID: "-req-1",
	}, auditlog.Event{Action: auditlog.ClusterCreated, TargetID: "=HYPERLINK(\"http://evil\")",
		Metadata: map[string]any{"name": "Zürich 東京 🚀", "nested": map[string]any{
			"list": []any{1, "two", map[string]any{"x": "y,\"z\"\nw"}}, "empty": map[string]any{}}}})
	record(auditlog.Context{IP: netip.MustParseAddr("2001:db8::1"), UserAgent: "@SUM(1+1)", RequestID: "+1"},
		auditlog.Event{Action: auditlog.ClusterTokenRotated, TargetID: "\ttabbed"})
	record(auditlog.Context{}, auditlog.Event{Action: auditlog.AuthSignout, TargetID: "plain, \"quoted\"\r\nline"})

	page, _ := b.page(t, org, token, "")
	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type %q", ct)
	}
	cd := resp.Header.Get("Content-Disposition")
	if !regexp.MustCompile(`^attachment; filename="audit-` + org + `-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.csv"$`).MatchString(cd) {
		t.Errorf("Content-Disposition %q does not name the org and the range", cd)
	}
	r := csv.NewReader(bytes.NewReader(body))
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v\n%s", err, body)
	}
	cols := eventColumns()
	if want := slices.Concat(cols, []string{"sentence"}, sealColumns); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("header %v, want %v", rows[0], want)
	}
	if len(rows)-1 != len(page.Events) || len(page.Events) != 3 {
		t.Fatalf("%d CSV rows, %d JSON events, want 3", len(rows)-1, len(page.Events))
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	for i, e := range page.Events {
		cell := map[string]string{}
		for j, c := range cols {
			cell[c] = rows[i+1][j]
		}
		at, err := time.Parse(time.RFC3339Nano, cell["occurred_at"])
		if err != nil || !at.Equal(e.OccurredAt) {
			t.Errorf("row %d occurred_at %q, want %v", i, cell["occurred_at"], e.OccurredAt)
		}
		want := map[string]string{
			"id": e.ID, "org_id": e.OrgID, "action": e.Action, "target_type": e.TargetType,
			"target_id": neutralised(str(e.TargetID)), "actor_type": e.ActorType, "actor_id": str(e.ActorID),
			"actor_email": neutralised(str(e.ActorEmail)), "ip": str(e.IP),
			"user_agent": neutralised(str(e.UserAgent)), "request_id": neutralised(str(e.RequestID)),
		}
		for c, w := range want {
			// encoding/csv reads a quoted \r\n as \n; the raw bytes are checked below.
			if w = strings.ReplaceAll(w, "\r\n", "\n"); cell[c] != w {
				t.Errorf("row %d %s: %q, want %q", i, c, cell[c], w)
			}
		}
		var fromCSV, fromJSON any
		if err := json.Unmarshal([]byte(cell["metadata"]), &fromCSV); err != nil {
			t.Errorf("row %d metadata %q: %v", i, cell["metadata"], err)
		}
		_ = json.Unmarshal(e.Metadata, &fromJSON)
		if !reflect.DeepEqual(fromCSV, fromJSON) {
			t.Errorf("row %d metadata %v, want %v", i, fromCSV, fromJSON)
		}
	}
	if !bytes.HasPrefix(body, []byte("id,org_id,")) || !bytes.Contains(body, []byte(",metadata,sentence,seq,hash,prev_hash\r\n")) || !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Errorf("records do not end with CRLF as RFC 4180 says:\n%q", body)
	}
	if !bytes.Contains(body, []byte(`,"plain, ""quoted""`+"\r\n"+`line",`)) {
		t.Errorf("a cell with quotes, a comma and CRLF is not quoted as RFC 4180 says:\n%s", body)
	}
	// The neutralising is there, not assumed: the first event's target is a formula.
	if got := rows[len(rows)-1][slices.Index(cols, "target_id")]; got != `'=HYPERLINK("http://evil")` {
		t.Errorf("formula target_id exported as %q", got)
	}
}

// sealColumns end each row of the CSV export.
var sealColumns = []string{"seq", "hash", "prev_hash"}

// neutralised is what a text cell becomes in the CSV.
func neutralised(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// TestCSVStopsWhenClientGoes: a client that hangs up in the middle of a
// large export stops the query: the database is soon no longer running it,
// and far fewer rows than exist were sent.
func TestCSVStopsWhenClientGoes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	const total = 100_000
	b.manyEvents(t, org, total)
	req, _ := http.NewRequest(http.MethodGet, b.base+"/api/orgs/"+org+"/audit?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // hang up mid-stream
	http.DefaultClient.CloseIdleConnections()

	b.waitNoExport(t, "the client left")
	if sent := metricValue(t, b, "auditlog_exported_rows_total"); sent <= 0 || sent >= total {
		t.Fatalf("%v rows sent; want some, and fewer than the %d that exist", sent, total)
	}
}

// TestCSVCutsOffAClientThatStopsReading: a client that stays connected but
// reads nothing is cut off within the floor's window once the socket's
// buffers are full: its connection ends, its query stops, its snapshot is
// released, and its export slot is free for the next owner.
func TestCSVCutsOffAClientThatStopsReading(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	b := setup(t, Config{ExportFloorWindow: window, MaxExports: 1})
	org, token := b.owner(t, "enterprise")
	b.manyEvents(t, org, 100_000)

	conn := b.startExport(t, org, token, "csv")
	start := time.Now()
	// ... and never read.

	b.waitNoExport(t, "the client stopped reading")
	// Filling the buffers takes a moment; the window is what the floor adds.
	if took := time.Since(start); took > window+3*time.Second {
		t.Errorf("the export ended %s after the client stopped reading; the floor's window is %s", took, window)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the connection is not closed: %v", err)
	}
	other, otherToken := b.owner(t, "team")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: other})
	if resp, body := b.get(t, "/api/orgs/"+other+"/audit?format=csv", otherToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("the stalled export still holds the only slot: %d %s", resp.StatusCode, body)
	}
}

// TestCSVCutsOffAClientBelowTheFloor: a client that keeps reading, but
// slower than the floor (here 32 KiB every 50 ms, about 650 KB a second,
// against 1 MiB per 500 ms), is cut off, although it never keeps a single
// write waiting for the whole window.
func TestCSVCutsOffAClientBelowTheFloor(t *testing.T) {
	t.Parallel()
	b := setupListening(t, Config{ExportFloorBytes: 1 << 20, ExportFloorWindow: 500 * time.Millisecond},
		func(l net.Listener) net.Listener { return smallSendBuffers{l} })
	org, token := b.owner(t, "enterprise")
	b.manyEvents(t, org, 100_000)

	conn := b.startExport(t, org, token, "csv")
	start := time.Now()
	read := 0
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.ReadFull(conn, make([]byte, 32<<10))
		read += n
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break // the server closed the connection
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v, want the server to close the connection", read, err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("still reading after 20 s (%d bytes): the slow client was not cut off", read)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.waitNoExport(t, "the slow client was cut off")
}

// smallSendBuffers gives the server's connections a small send buffer, so
// that the server waits on a slow reader in small steps, as it would on a
// long network path, instead of in megabytes at once over loopback.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// TestCSVExportsLimitedPerOrg: one org that holds its export slots (two,
// with stalled readers) gets 429 for a third, while another org exports.
func TestCSVExportsLimitedPerOrg(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{ExportFloorWindow: time.Minute})
	org, token := b.owner(t, "enterprise")
	b.manyEvents(t, org, 100_000)
	for range 2 {
		b.startExport(t, org, token, "csv") // and never read
	}
	resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}

	other, otherToken := b.owner(t, "team")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: other})
	resp, body = b.get(t, "/api/orgs/"+other+"/audit?format=csv", otherToken)
	if resp.StatusCode != http.StatusOK || bytes.Count(body, []byte("\r\n")) != 2 {
		t.Fatalf("another org's export while the first holds its slots: %d %s", resp.StatusCode, body)
	}
}

// startExport asks for org's export in format on a connection of its own,
// waits for the response's status line (the export then holds its slots)
// and returns the connection, closed at the end of the test.
func (b *testBundle) startExport(t *testing.T, org, token, format string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /api/orgs/%s/audit?format=%s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", org, format, token)
	status := make([]byte, len("HTTP/1.1 200"))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, status); err != nil || string(status) != "HTTP/1.1 200" {
		t.Fatalf("export of %s: %q %v", org, status, err)
	}
	return conn
}

// manyEvents gives org n events of today, each with half a kilobyte of
// metadata: more than socket buffers hold.
func (b *testBundle) manyEvents(t *testing.T, org string, n int) {
	t.Helper()
	ctx := context.Background()
	// One UTC day for the leaf and the events: date_trunc('day', now()) is
	// the session's time zone's, and either statement may be the first
	// after midnight.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	if _, err := b.admin.Exec(ctx, "SELECT audit.make_leaf('enterprise', $1::date)", today); err != nil {
		t.Fatal(err)
	}
	_, err := b.admin.Exec(ctx, `
		INSERT INTO audit.events_enterprise (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		SELECT gen_random_uuid(), $1, $3::timestamptz + i * interval '1 ms', 'auth.signout', 'auth', 'system',
		       jsonb_build_object('padding', repeat('x', 500))
		FROM generate_series(1, $2) i`, org, n, today)
	if err != nil {
		t.Fatal(err)
	}
}

// waitNoExport waits until no export query runs in the test database and no
// connection holds a snapshot, and fails the test if one still does 10 s
// later.
func (b *testBundle) waitNoExport(t *testing.T, why string) {
	t.Helper()
	dbName := b.url[strings.LastIndex(b.url, "/")+1:]
	dbName, _, _ = strings.Cut(dbName, "?")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// An export's read transaction holds a snapshot (backend_xmin) until it ends.
		var running int
		err := b.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
			  AND ((state = 'active' AND query LIKE 'COPY (%') OR backend_xmin IS NOT NULL)`, dbName).Scan(&running)
		if err != nil {
			t.Fatal(err)
		}
		if running == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the export query still runs 10 s after %s", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCSVFiltersAsPages: an export holds exactly the events the JSON pages
// do, filter by filter.
func TestCSVFiltersAsPages(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	for i, action := range []string{"cluster.token_rotated", "auth.signout", "cluster.token_rotated", "org.sso.portal_opened", "auth.signout"} {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: action, ActorEmail: []string{"ann@example.com", "bob@example.com"}[i%2],
			OccurredAt: time.Now().Add(-time.Duration(i) * 36 * time.Hour)})
	}
	for _, query := range []string{"", "target_type=cluster", "target_type=org&action=sso", "action=token", "action=auth.signout",
		"action=nomatch", "actor=ann%40example.com", "range=24h", "since=" + time.Now().Add(-100*time.Hour).UTC().Format(time.RFC3339)} {
		page, _ := b.page(t, org, token, query)
		resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv&"+query, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rows[1:] {
			ids = append(ids, r[0])
		}
		if !slices.Equal(ids, page.ids()) || (query == "" && len(ids) != 5) {
			t.Errorf("%q: CSV %v, pages %v", query, ids, page.ids())
		}
	}
}

// TestCSVByteOrderMark: bom=1 starts the export with a UTF-8 byte-order mark
// and nothing else changes; without it there is none; it is for CSV only.
func TestCSVByteOrderMark(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "zoë@example.com"})
	_, plain := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token)
	resp, marked := b.get(t, "/api/orgs/"+org+"/audit?format=csv&bom=1", token)
	if resp.StatusCode != http.StatusOK || bytes.HasPrefix(plain, []byte("\ufeff")) || !bytes.Equal(marked, append([]byte("\ufeff"), plain...)) ||
		!bytes.Contains(plain, []byte("zoë@example.com")) {
		t.Errorf("with bom=1: %d %q; without: %q", resp.StatusCode, marked, plain)
	}
	for _, query := range []string{"bom=1", "format=csv&bom=yes"} {
		resp, body := b.get(t, "/api/orgs/"+org+"/audit?"+query, token)
		if p := wantProblem(t, resp, body, http.StatusBadRequest); len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != "bom" {
			t.Errorf("%s: %s", query, body)
		}
	}
}
