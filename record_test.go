package auditlog_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// Record stores the event with the context given alongside it, without
// SetContext: every field of the request, the actor's email looked up.
func TestRecordStoresItsContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"})
	userID, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := auditlog.Record(ctx, tx, auditlog.Context{
			Actor:     auditlog.Actor{ID: userID, ViaPAT: "ci-deploy"},
			IP:        netip.MustParseAddr("2001:db8::7"),
			UserAgent: "terraform/1.9",
			RequestID: "req-9",
		}, auditlog.Event{OrgID: org, Action: auditlog.ClusterDeleted, TargetID: "cl-1", Metadata: map[string]any{"name": "prod"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := events(t, pool, org)
	if len(got) != 1 {
		t.Fatalf("%d events stored, want 1", len(got))
	}
	e := got[0]
	if e.ActorType != "user" || *e.ActorID != userID || *e.ActorEmail != email || e.IP.String() != "2001:db8::7" ||
		*e.UserAgent != "terraform/1.9" || *e.RequestID != "req-9" || e.Metadata["via_pat"] != "ci-deploy" {
		t.Fatalf("stored %+v, want the actor, its email, the PAT, IP, user agent and request id given to Record", e)
	}
}

// What Record's context leaves empty comes from SetContext's; what it gives
// wins, each request field on its own; the event's actor wins over both.
func TestRecordFallsBackToSetContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	ctxUser, _ := fixture.User(t, pool, fixture.UserOpts{})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := auditlog.SetContext(ctx, tx, auditlog.Context{Actor: auditlog.Actor{ID: ctxUser, ViaPAT: "ctx-pat"},
			IP: netip.MustParseAddr("192.0.2.1"), UserAgent: "ctx-agent", RequestID: "ctx-req"})
		if err != nil {
			return err
		}
		// Only a request id: the rest is the transaction's context.
		if _, err := auditlog.Record(ctx, tx, auditlog.Context{RequestID: "req-1"}, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}); err != nil {
			return err
		}
		// An IP and an actor given: they win, the context's PAT goes with its actor.
		_, err = auditlog.Record(ctx, tx, auditlog.Context{Actor: auditlog.Actor{Email: "bot@example.com"}, IP: netip.MustParseAddr("192.0.2.2")},
			auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, TargetID: "second"})
		if err != nil {
			return err
		}
		// The event's actor wins over Record's.
		_, err = auditlog.Record(ctx, tx, auditlog.Context{Actor: auditlog.Actor{Email: "bot@example.com"}},
			auditlog.Event{OrgID: org, Action: auditlog.AuthSignout, TargetID: "third", Actor: &auditlog.Actor{Email: "ann@example.com"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := events(t, pool, org)
	if len(got) != 3 {
		t.Fatalf("%d events stored, want 3", len(got))
	}
	byTarget := map[string]fixture.StoredEvent{}
	for _, e := range got {
		target := ""
		if e.TargetID != nil {
			target = *e.TargetID
		}
		byTarget[target] = e
	}
	first, second, third := byTarget[""], byTarget["second"], byTarget["third"]
	if *first.ActorID != ctxUser || first.IP.String() != "192.0.2.1" || *first.UserAgent != "ctx-agent" || *first.RequestID != "req-1" || first.Metadata["via_pat"] != "ctx-pat" {
		t.Errorf("first event %+v: want the context's actor, PAT, IP and user agent, Record's request id", first)
	}
	if second.ActorID != nil || *second.ActorEmail != "bot@example.com" || second.IP.String() != "192.0.2.2" || *second.UserAgent != "ctx-agent" || second.Metadata["via_pat"] != nil {
		t.Errorf("second event %+v: want Record's actor (no PAT) and IP, the context's user agent", second)
	}
	if *third.ActorEmail != "ann@example.com" {
		t.Errorf("third event's actor is %v, want the event's own", *third.ActorEmail)
	}
}

// roundTrips counts the messages a connection sends: pgx writes each batch
// of protocol messages at once and waits for the answer, so a write is a
// round trip.
type roundTrips struct {
	net.Conn
	writes *atomic.Int64
}

func (c roundTrips) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Record with the request's context is one round trip to the server, where
// SetContext then Log are two (once the connection has prepared the
// statements, as a pool's connections have after their first events).
func TestRecordIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	org := fixture.Org(t, testdb.Pool(t, url), fixture.OrgOpts{})
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return roundTrips{c, &writes}, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	request := auditlog.Context{Actor: auditlog.Actor{Email: "ann@example.com", ViaPAT: "ci"},
		IP: netip.MustParseAddr("203.0.113.7"), UserAgent: "curl/8", RequestID: "req-1"}
	event := auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}
	count := func(record func() error) int64 {
		t.Helper()
		if err := record(); err != nil { // prepares the statements
			t.Fatal(err)
		}
		before := writes.Load()
		if err := record(); err != nil {
			t.Fatal(err)
		}
		return writes.Load() - before
	}
	if n := count(func() error { _, err := auditlog.Record(ctx, tx, request, event); return err }); n != 1 {
		t.Errorf("Record took %d round trips, want 1", n)
	}
	twoCalls := func() error {
		if err := auditlog.SetContext(ctx, tx, request); err != nil {
			return err
		}
		_, err := auditlog.Log(ctx, tx, event)
		return err
	}
	if n := count(twoCalls); n != 2 {
		t.Errorf("SetContext then Log took %d round trips, want 2: the count is wrong", n)
	}
}

// log_event's request arguments obey set_context's rules: a malformed IP is
// refused by PostgreSQL (22P02) as set_context's is, and an actor email or
// PAT given as arguments is checked as one from the context is.
// (TestLogCutsLongUserAgentAndRequestID: long headers are cut either way.)
func TestLogEventRequestArgumentsFollowSetContextRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, org := writer(t)
	for call, args := range map[string][]any{
		"SELECT audit.set_context(ip => $1)":                   {"203.0.113.300"},
		"SELECT audit.log_event($1, 'auth.signout', ip => $2)": {org, "203.0.113.300"},
	} {
		_, err := conn.Exec(ctx, call, args...)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22P02" {
			t.Errorf("%s with a malformed IP: %v, want 22P02", call, err)
		}
	}
	for name, args := range map[string]string{
		"AL006 malformed email": "actor_email => 'a b@example.com'",
		"AL005 long PAT":        "via_pat => repeat('p', 101)",
	} {
		_, err := conn.Exec(ctx, "SELECT audit.log_event($1, 'auth.signout', ip => '203.0.113.7', request_id => 'r', "+args+")", org)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != name[:5] {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// log_event reads the context only in a transaction that called set_context:
// not one a previous transaction of the connection set, nor settings a caller
// set itself (a malformed one included), which the contract does not offer.
func TestLogReadsContextOnlyWhereSetContextRan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	// One connection: its earlier transactions must leave nothing behind.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	setContext := "SELECT audit.set_context(actor_email => 'ctx@example.com', ip => '192.0.2.1')"
	logEvent := "SELECT audit.log_event($1, 'auth.signout', target_id => $2)"
	for _, c := range []struct{ target, before string }{
		{"earlier", setContext}, // its own event below; the next transaction must not inherit it
		{"later", ""},
		{"direct", "SET LOCAL audit.actor_email = 'direct@example.com'; SET LOCAL audit.ip = 'not an address'"},
		{"same", setContext},
	} {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if c.before != "" {
				if _, err := tx.Exec(ctx, c.before); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, logEvent, org, c.target)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", c.target, err)
		}
	}
	for _, e := range events(t, pool, org) {
		fromContext := e.ActorEmail != nil && *e.ActorEmail == "ctx@example.com" && e.IP != nil && e.IP.String() == "192.0.2.1"
		system := e.ActorType == "system" && e.ActorEmail == nil && e.IP == nil
		if want := *e.TargetID == "earlier" || *e.TargetID == "same"; want != fromContext || !want && !system {
			t.Errorf("event %s: actor %s %v, ip %v; want the context only where set_context ran", *e.TargetID, e.ActorType, e.ActorEmail, e.IP)
		}
	}
}
