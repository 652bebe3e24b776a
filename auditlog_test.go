package auditlog_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// events are the org's events in audit.events, oldest first.
func events(t *testing.T, pool *pgxpool.Pool, orgID string) []fixture.StoredEvent {
	t.Helper()
	return fixture.Events(t, pool, "audit.events", orgID)
}

func TestLogCommittedEventHasEveryField(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	userID, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})

	before := time.Now()
	var id string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := auditlog.SetContext(ctx, tx, auditlog.Context{
			Actor:     auditlog.Actor{ID: userID, ViaPAT: "ci-deploy"},
			IP:        netip.MustParseAddr("203.0.113.7"),
			UserAgent: "terraform/1.9",
			RequestID: "req-123",
		})
		if err != nil {
			return err
		}
		id, err = auditlog.Log(ctx, tx, auditlog.Event{
			OrgID: org, Action: auditlog.ClusterTokenRotated, TargetID: "cl-42",
			Metadata: map[string]any{"reason": "leaked"},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	got := events(t, pool, org)
	if len(got) != 1 {
		t.Fatalf("want exactly one event, got %d", len(got))
	}
	e := got[0]
	check := func(field string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	check("id", e.ID, id)
	check("org_id", e.OrgID, org)
	check("action", e.Action, "cluster.token_rotated")
	check("target_type", e.TargetType, "cluster")
	check("target_id", *e.TargetID, "cl-42")
	check("actor_type", e.ActorType, "user")
	check("actor_id", *e.ActorID, userID)
	check("actor_email (looked up from cloud.users)", *e.ActorEmail, email)
	check("ip", *e.IP, "203.0.113.7")
	check("user_agent", *e.UserAgent, "terraform/1.9")
	check("request_id", *e.RequestID, "req-123")
	check("metadata", e.Metadata, map[string]any{"reason": "leaked", "via_pat": "ci-deploy"})
	if e.OccurredAt.Before(before.Add(-time.Second)) || e.OccurredAt.After(time.Now().Add(time.Second)) {
		t.Errorf("occurred_at %v is not the time of the action", e.OccurredAt)
	}
	var tier string
	if err := pool.QueryRow(ctx, "SELECT tableoid::regclass::text FROM audit.events_team WHERE id = $1", id).Scan(&tier); err != nil {
		t.Fatalf("event not stored in the team tier: %v", err)
	}
	if want := "audit.events_team_p" + e.OccurredAt.UTC().Format("20060102"); tier != want {
		t.Errorf("stored in %s, want %s", tier, want)
	}
}

func TestLogWithoutActorIsSystem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.ClusterAgentUpgradeRequested,
			Metadata: map[string]any{"from_version": "1.2.0", "to_version": "1.3.0"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := events(t, pool, org)
	if len(got) != 1 || got[0].ActorType != "system" || got[0].ActorID != nil || got[0].ActorEmail != nil {
		t.Fatalf("want one system event without actor, got %+v", got)
	}
	if _, ok := got[0].Metadata["via_pat"]; ok {
		t.Errorf("system event carries via_pat: %v", got[0].Metadata)
	}
}

// A nil map, or a nil pointer, as Metadata is no metadata, as its doc says.
func TestLogNilMetadataIsNone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	var none map[string]any
	var nowhere *struct{ Name string }
	for _, metadata := range []any{none, nowhere} {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Metadata: metadata})
			return err
		})
		if err != nil {
			t.Fatalf("%T(nil): %v", metadata, err)
		}
	}
	got := events(t, pool, org)
	if len(got) != 2 {
		t.Fatalf("%d events stored, want 2", len(got))
	}
	for _, e := range got {
		if len(e.Metadata) != 0 {
			t.Errorf("stored metadata %v, want none", e.Metadata)
		}
	}
}

// An actor given to Log overrides the transaction's context for that event.
func TestLogActorOverridesContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	ctxUser, _ := fixture.User(t, pool, fixture.UserOpts{})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := auditlog.SetContext(ctx, tx, auditlog.Context{Actor: auditlog.Actor{ID: ctxUser, ViaPAT: "ctx-pat"}}); err != nil {
			return err
		}
		_, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.AuthSignin,
			Metadata: map[string]any{"method": "sso"}, Actor: &auditlog.Actor{Email: "bot@example.com"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := events(t, pool, org)
	if len(got) != 1 || got[0].ActorID != nil || *got[0].ActorEmail != "bot@example.com" {
		t.Fatalf("actor not overridden: %+v", got)
	}
	if _, ok := got[0].Metadata["via_pat"]; ok {
		t.Errorf("the context's PAT leaked into an overridden actor: %v", got[0].Metadata)
	}
}

func TestLogRolledBackLeavesNoEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	boom := errors.New("the action failed")
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got := events(t, pool, org); len(got) != 0 {
		t.Fatalf("rolled-back transaction left %d events", len(got))
	}
	// And the context is transaction-local: it does not leak into the next one.
	var leaked string
	if err := pool.QueryRow(ctx, "SELECT coalesce(current_setting('audit.actor_id', true), '')").Scan(&leaked); err != nil || leaked != "" {
		t.Fatalf("context outlived its transaction: %q %v", leaked, err)
	}
}

func TestLogValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	long := func(n int) string { return strings.Repeat("x", n) }

	cases := []struct {
		name  string
		event auditlog.Event
		ctx   *auditlog.Context
		rule  error
		code  string
	}{
		{"unknown org", auditlog.Event{OrgID: "00000000-0000-0000-0000-000000000000", Action: auditlog.AuthSignout}, nil, auditlog.ErrUnknownOrg, "AL001"},
		{"unknown action", auditlog.Event{OrgID: org, Action: "cluster.exploded"}, nil, auditlog.ErrUnknownAction, "AL002"},
		{"metadata not an object", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Metadata: []int{1, 2}}, nil, auditlog.ErrMetadataNotObject, "AL003"},
		{"metadata a string", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Metadata: "hello"}, nil, auditlog.ErrMetadataNotObject, "AL003"},
		{"required key missing", auditlog.Event{OrgID: org, Action: auditlog.BillingSubscriptionChanged,
			Metadata: map[string]any{"subscription_id": "sub_1", "previous_plan": "free", "new_plan": "team", "previous_quantity": 1}}, nil, auditlog.ErrMissingMetadata, "AL004"},
		{"target id too long", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, TargetID: long(auditlog.MaxTargetIDLen + 1)}, nil, auditlog.ErrTooLong, "AL005"},
		{"metadata too big", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Metadata: map[string]any{"blob": randomText(auditlog.MaxMetadataBytes)}}, nil, auditlog.ErrTooLong, "AL005"},
		{"PAT name too long", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Actor: &auditlog.Actor{ViaPAT: long(auditlog.MaxViaPATLen + 1)}}, nil, auditlog.ErrTooLong, "AL005"},
		{"malformed email argument", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Actor: &auditlog.Actor{Email: "not-an-email"}}, nil, auditlog.ErrMalformedEmail, "AL006"},
		{"malformed email in context", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}, &auditlog.Context{Actor: auditlog.Actor{Email: "a b@example.com"}}, auditlog.ErrMalformedEmail, "AL006"},
		{"email too long", auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, Actor: &auditlog.Actor{Email: long(250) + "@example.com"}}, nil, auditlog.ErrMalformedEmail, "AL006"},
		{"no org", auditlog.Event{Action: auditlog.AuthSignout}, nil, auditlog.ErrMissingArgument, "AL007"},
		{"no action", auditlog.Event{OrgID: org}, nil, auditlog.ErrMissingArgument, "AL007"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if c.ctx != nil {
						if err := auditlog.SetContext(ctx, tx, *c.ctx); err != nil {
							return err
						}
					}
					_, err := auditlog.Log(ctx, tx, c.event)
					return err
				})
				var refused *auditlog.Error
				if !errors.As(err, &refused) || !errors.Is(err, c.rule) {
					t.Fatalf("got %v, want an *auditlog.Error for %v", err, c.rule)
				}
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != c.code {
					t.Fatalf("SQLSTATE %v, want %s", pgErr, c.code)
				}
				if !strings.HasPrefix(err.Error(), "auditlog: audit.log_event: ") {
					t.Errorf("message %q does not say where it comes from", err)
				}
			})
		}
	})
	if got := events(t, pool, org); len(got) != 0 {
		t.Fatalf("refused events were stored: %d", len(got))
	}
}

// log_event's common path checks the rules with conditions of its own (the
// slow path asks audit.event_fault): each must let through a value at its
// limit and stop the first past it.
func TestLogRulesHoldAtTheirLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	long := func(n int) string { return strings.Repeat("x", n) }
	// The blob that makes metadata exactly MaxMetadataBytes, as log_event
	// measures it.
	var blob int
	err := pool.QueryRow(ctx, "SELECT $1 - audit.jsonb_bytes(jsonb_build_object('blob', ''))", auditlog.MaxMetadataBytes).Scan(&blob)
	if err != nil {
		t.Fatal(err)
	}
	email := func(n int) string { return long(n-len("@example.com")) + "@example.com" }
	for _, c := range []struct {
		name        string
		atLimit     auditlog.Event
		pastLimit   auditlog.Event
		pastLimitIs error
	}{
		{"target_id", auditlog.Event{TargetID: long(auditlog.MaxTargetIDLen)},
			auditlog.Event{TargetID: long(auditlog.MaxTargetIDLen + 1)}, auditlog.ErrTooLong},
		{"via_pat", auditlog.Event{Actor: &auditlog.Actor{ViaPAT: long(auditlog.MaxViaPATLen)}},
			auditlog.Event{Actor: &auditlog.Actor{ViaPAT: long(auditlog.MaxViaPATLen + 1)}}, auditlog.ErrTooLong},
		{"email", auditlog.Event{Actor: &auditlog.Actor{Email: email(auditlog.MaxEmailLen)}},
			auditlog.Event{Actor: &auditlog.Actor{Email: email(auditlog.MaxEmailLen + 1)}}, auditlog.ErrMalformedEmail},
		{"metadata", auditlog.Event{Metadata: map[string]any{"blob": long(blob)}},
			auditlog.Event{Metadata: map[string]any{"blob": long(blob + 1)}}, auditlog.ErrTooLong},
	} {
		c.atLimit.OrgID, c.atLimit.Action = org, auditlog.AuthSignout
		c.pastLimit.OrgID, c.pastLimit.Action = org, auditlog.AuthSignout
		if _, err := auditlog.Log(ctx, pool, c.atLimit); err != nil {
			t.Errorf("%s at its limit: %v", c.name, err)
		}
		if _, err := auditlog.Log(ctx, pool, c.pastLimit); !errors.Is(err, c.pastLimitIs) {
			t.Errorf("%s past its limit: %v, want %v", c.name, err, c.pastLimitIs)
		}
	}
	if got := events(t, pool, org); len(got) != 4 {
		t.Fatalf("%d events stored, want the 4 at their limits", len(got))
	}
}

// Oversized request headers must not fail the caller's action: they are cut,
// whether set for the transaction or given with the event.
func TestLogCutsLongUserAgentAndRequestID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	long := auditlog.Context{UserAgent: strings.Repeat("u", 5000), RequestID: strings.Repeat("r", 500)}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := auditlog.SetContext(ctx, tx, long); err != nil {
			return err
		}
		_, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.Record(ctx, pool, long, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}); err != nil {
		t.Fatal(err)
	}
	got := events(t, pool, org)
	if len(got) != 2 {
		t.Fatalf("%d events stored, want 2", len(got))
	}
	for _, e := range got {
		if len(*e.UserAgent) != auditlog.MaxUserAgentLen || len(*e.RequestID) != auditlog.MaxRequestIDLen {
			t.Fatalf("want user agent and request id cut to %d and %d: %+v", auditlog.MaxUserAgentLen, auditlog.MaxRequestIDLen, e)
		}
	}
}

// log_event makes today's leaf itself when the retention worker has not:
// a fresh database has no leaves at all.
func TestLogMakesMissingLeaf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	var leaves int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit.partitions").Scan(&leaves); err != nil || leaves != 0 {
		t.Fatalf("fresh database has %d leaves (%v)", leaves, err)
	}
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"})
	before := time.Now().UTC()
	if _, err := auditlog.Log(ctx, pool, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	var leaf, rangeStart string
	err := pool.QueryRow(ctx, "SELECT leaf, to_char(range_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM audit.partitions WHERE tier = 'enterprise'").Scan(&leaf, &rangeStart)
	if err != nil {
		t.Fatal(err)
	}
	// Today is the day of either end of the call, should it span midnight.
	if !slices.ContainsFunc([]time.Time{before, after}, func(today time.Time) bool {
		return leaf == "events_enterprise_p"+today.Format("20060102") && rangeStart == today.Format("2006-01-02")+" 00:00"
	}) {
		t.Fatalf("made leaf %s from %s", leaf, rangeStart)
	}
	if len(events(t, pool, org)) != 1 {
		t.Fatal("event not stored")
	}
}

// Eight writers at once, starting with no leaf: all race to make it, and
// every event is there afterwards.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	const writers, each = 8, 50
	var wg sync.WaitGroup
	ids := make([][]string, writers)
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					id, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: auditlog.ClusterCreated,
						TargetID: fmt.Sprintf("w%d-%d", w, i), Metadata: map[string]any{"name": "c"}})
					ids[w] = append(ids[w], id)
					return err
				})
				if err != nil {
					t.Errorf("writer %d event %d: %v", w, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	got := events(t, pool, org)
	if len(got) != writers*each {
		t.Fatalf("stored %d events, want %d", len(got), writers*each)
	}
	stored := map[string]bool{}
	for _, e := range got {
		stored[e.ID] = true
	}
	for w := range ids {
		for _, id := range ids[w] {
			if !stored[id] {
				t.Fatalf("event %s returned to writer %d is missing", id, w)
			}
		}
	}
}

// The Go constants and Actions must match audit.actions exactly.
func TestActionsMatchCatalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	rows, err := pool.Query(ctx, "SELECT action, target_type, required_keys FROM audit.actions ORDER BY action")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Action       string
		TargetType   string
		RequiredKeys []string
	}
	catalog, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	inGo := map[string]auditlog.ActionInfo{}
	for _, a := range auditlog.Actions {
		inGo[string(a.Action)] = a
	}
	for _, c := range catalog {
		g, ok := inGo[c.Action]
		if !ok {
			t.Errorf("catalog action %s has no Go constant in Actions", c.Action)
			continue
		}
		if g.TargetType != c.TargetType || strings.Join(g.RequiredKeys, ",") != strings.Join(c.RequiredKeys, ",") {
			t.Errorf("%s: Go says %s %v, catalog %s %v", c.Action, g.TargetType, g.RequiredKeys, c.TargetType, c.RequiredKeys)
		}
		delete(inGo, c.Action)
	}
	for a := range inGo {
		t.Errorf("Go action %s is not in the catalog", a)
	}

	// Every Action constant declared in actions.go is listed in Actions.
	listed := map[string]bool{}
	for _, a := range auditlog.Actions {
		listed[string(a.Action)] = true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "actions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || spec.Type == nil || fmt.Sprint(spec.Type) != "Action" {
			return true
		}
		for _, v := range spec.Values {
			lit := strings.Trim(v.(*ast.BasicLit).Value, `"`)
			if !listed[lit] {
				t.Errorf("constant %s = %q is missing from Actions", spec.Names[0], lit)
			}
		}
		return true
	})
}

func randomText(n int) string {
	b := make([]byte, 0, n)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%x", i*2654435761)
	}
	return string(b[:n])
}

// writer connects as a login role of audit_writer, to call log_event in
// plain SQL, and makes an org.
func writer(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	ctx := context.Background()
	url := testdb.New(t)
	org := fixture.Org(t, testdb.Pool(t, url), fixture.OrgOpts{})
	conn, err := pgx.Connect(ctx, testdb.Role(t, url, "audit_writer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn, org
}

// Metadata is measured uncompressed: 2 MB that lz4 compresses to 8 KB,
// taken from a compressed column by a writer, is refused like any 2 MB.
func TestLogMeasuresCompressedMetadataUncompressed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, org := writer(t)
	if _, err := conn.Exec(ctx, "SELECT audit.log_event($1, 'auth.signout')", org); err != nil {
		t.Fatal(err) // makes the day's leaf: the common path
	}
	for _, sql := range []string{
		"CREATE TEMP TABLE big (metadata jsonb COMPRESSION lz4)",
		"INSERT INTO big SELECT jsonb_build_object('blob', repeat('x', 2000000))",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, err := conn.Exec(ctx, "SELECT audit.log_event($1, 'auth.signout', metadata => b.metadata) FROM big b", org)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "AL005" || !strings.Contains(pgErr.Message, "metadata is") {
		t.Fatalf("log_event with 2 MB of lz4-compressed metadata: %v, want the metadata size error (AL005)", err)
	}
}

// via_pat inside metadata obeys the rule the import applies
// (audit.via_pat_ok): a string of at most 100 characters.
func TestLogRefusesBadViaPATInMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, org := writer(t)
	// The message says what is wrong with the metadata's via_pat.
	for says, viaPAT := range map[string]any{"not 5000 characters": strings.Repeat("x", 5000),
		"not a JSON object": map[string]any{"name": "ci"}, "not a JSON null": nil} {
		md := map[string]any{"via_pat": viaPAT}
		_, err := conn.Exec(ctx, "SELECT audit.log_event($1, 'auth.signout', metadata => $2)", org, md)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "AL005" || !strings.HasSuffix(pgErr.Message, "via_pat must be a string of at most 100 characters, "+says) {
			t.Errorf("log_event with metadata.via_pat %.40v: %v, want the via_pat error (AL005) ending %q", viaPAT, err, says)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT audit.log_event($1, 'auth.signout', metadata => $2)", org, map[string]any{"via_pat": "ci"}); err != nil {
		t.Errorf("log_event with a short via_pat: %v", err)
	}
}
