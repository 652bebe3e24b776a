package delivery_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// TestSubscriptionsRecordTheirEvents: subscribe, pause, resume and
// unsubscribe, called as the control plane, each record their audit_stream
// event (a pause of a paused one none); bad rules, names with control
// characters and unknown subscriptions are refused with their codes.
func TestSubscriptionsRecordTheirEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	id := e.subscribe(t, org, "siem", delivery.Rule{Actions: []string{"cluster.*", "pat.created"}, TargetTypes: []string{"cluster"}}, rc)
	// Pausing twice changes, and records, only once.
	for _, sql := range []string{"SELECT audit.pause_subscription($1, $2)", "SELECT audit.pause_subscription($1, $2)",
		"SELECT audit.resume_subscription($1, $2)", "SELECT audit.unsubscribe($1, $2)"} {
		if _, err := e.control.Exec(ctx, sql, org, id); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rows, err := e.admin.Query(ctx, "SELECT action || ' ' || coalesce(metadata->>'new_state', '') FROM audit.events WHERE org_id = $1 AND target_id = $2 ORDER BY occurred_at, action", org, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, strings.TrimSpace(s))
	}
	want := "audit_stream.created,audit_stream.updated paused,audit_stream.updated active,audit_stream.deleted"
	if strings.Join(got, ",") != want {
		t.Errorf("events %v, want %s", got, want)
	}

	refused := []struct {
		rule delivery.Rule
		code string
	}{
		{delivery.Rule{Actions: []string{"cluster.nope"}}, "AL041"},
		{delivery.Rule{Actions: []string{"nope.*"}}, "AL041"},
		{delivery.Rule{Actions: []string{"cluster*"}}, "AL041"},
		{delivery.Rule{TargetTypes: []string{"spaceship"}}, "AL041"},
		{delivery.Rule{ActorEmails: []string{"not-an-email"}}, "AL041"},
	}
	for _, c := range refused {
		_, _, err := delivery.Subscribe(ctx, e.control, guard(rc), delivery.Subscription{OrgID: org, Name: "bad", Kind: delivery.KindWebhook, Rule: c.rule, Destination: delivery.Destination{URL: rc.srv.URL}})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != c.code {
			t.Errorf("rule %+v: %v, want SQLSTATE %s", c.rule, err, c.code)
		}
	}
	// A name is printed by auditlog subscriptions list: no line breaks,
	// tabs or terminal escapes to forge its rows with.
	for _, name := range []string{"a\nb", "a\tb", "\x1b[2Jx"} {
		_, _, err := delivery.Subscribe(ctx, e.control, guard(rc), delivery.Subscription{OrgID: org, Name: name, Kind: delivery.KindWebhook, Destination: delivery.Destination{URL: rc.srv.URL}})
		if !isCode(err, "AL041") {
			t.Errorf("name %q: %v, want SQLSTATE AL041", name, err)
		}
	}
	if _, err := e.control.Exec(ctx, "SELECT audit.pause_subscription($1, $2)", org, id); !isCode(err, "AL040") {
		t.Errorf("pausing a removed subscription: %v, want AL040", err)
	}
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// TestSecretsAreSealedAndHidden: the stored destination holds neither the
// URL nor the secret in clear, only the worker's key opens it, and
// audit_reader and audit_writer cannot read it (audit_reader sees
// audit.streams, without it); the worker reads it but changes nothing
// directly.
func TestSecretsAreSealedAndHidden(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	var sealed []byte
	if err := e.admin.QueryRow(ctx, "SELECT sealed FROM audit.subscriptions WHERE org_id = $1", org).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), rc.secret) || strings.Contains(string(sealed), "/hook") {
		t.Error("the sealed destination holds the secret or the URL in clear")
	}
	d, err := delivery.Open(e.key, sealed)
	if err != nil || d.Secret != rc.secret || d.URL != rc.srv.URL+"/hook" {
		t.Errorf("Open: %+v, %v", d, err)
	}
	other, _ := delivery.LoadOrCreateKey(t.TempDir()+"/k.pem", true)
	if _, err := delivery.Open(other, sealed); err == nil {
		t.Error("another key opened the destination")
	}

	reader := testdb.Pool(t, testdb.Role(t, e.url, "audit_reader"))
	deliverer := testdb.Pool(t, testdb.Role(t, e.url, "audit_deliverer"))
	for _, c := range []struct {
		pool interface {
			Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		}
		sql     string
		allowed bool
	}{
		{reader, "SELECT sealed FROM audit.subscriptions", false},
		{reader, "SELECT id, name, host, lag FROM audit.streams", true},
		{reader, "SELECT * FROM audit.delivery_attempts", true},
		{reader, "SELECT audit.delivery_key()", false},
		{e.control, "SELECT sealed FROM audit.subscriptions", false},
		{e.control, "SELECT * FROM audit.streams", false},
		{e.control, "UPDATE audit.subscriptions SET position = 0", false},
		{deliverer, "SELECT sealed FROM audit.subscriptions", true},
		{deliverer, "UPDATE audit.subscriptions SET position = 0", false},
		{deliverer, "DELETE FROM audit.delivery_attempts", false},
	} {
		_, err := c.pool.Exec(ctx, c.sql)
		if c.allowed != (err == nil) || (err != nil && !isCode(err, "42501")) {
			t.Errorf("%s: %v, allowed %v", c.sql, err, c.allowed)
		}
	}
}

// TestTestSendsASignedEmptyDelivery: delivery.Test posts a delivery with no
// events, signed with the subscription's secret, and returns the status.
func TestTestSendsASignedEmptyDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	id := e.subscribe(t, org, "hook", delivery.Rule{}, rc)
	deliverer := testdb.Pool(t, testdb.Role(t, e.url, "audit_deliverer"))
	status, err := delivery.Test(context.Background(), deliverer, e.key, guard(rc), org, id)
	if err != nil || status != 200 {
		t.Fatalf("Test: %d, %v", status, err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.batches) != 1 || !rc.batches[0].signedOK || len(rc.batches[0].Events) != 0 {
		t.Errorf("received %+v", rc.batches)
	}
}

// TestFailedAttemptsShowNoURL: a Slack URL is the secret itself, and a
// webhook's may hold a token; when a connection fails, neither the attempt
// log (which audit_reader reads), the worker's log nor delivery.Test's
// error shows it, only its host.
func TestFailedAttemptsShowNoURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	org := fixture.Org(t, e.admin, fixture.OrgOpts{})
	rc := newReceiver(t, nil)
	g := guard(rc)
	const secretPath = "/services/T0/B0/s3cretSlackPath"
	id, _, err := delivery.Subscribe(ctx, e.control, g, delivery.Subscription{OrgID: org, Name: "slack", Kind: delivery.KindSlack,
		Destination: delivery.Destination{URL: rc.srv.URL + secretPath}})
	if err != nil {
		t.Fatal(err)
	}
	rc.srv.Close() // every connection is refused from now on
	deliverer := testdb.Pool(t, testdb.Role(t, e.url, "audit_deliverer"))
	if _, err := delivery.Test(ctx, deliverer, e.key, g, org, id); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("delivery.Test: %v", err)
	}
	var logs fixture.Buffer
	e.start(t, delivery.Config{Guard: g, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	write(t, e, org, 1, 1)
	reader := testdb.Pool(t, testdb.Role(t, e.url, "audit_reader"))
	var errText string
	waitFor(t, "a failed attempt", func() bool {
		return reader.QueryRow(ctx, "SELECT error FROM audit.delivery_attempts WHERE subscription_id = $1 LIMIT 1", id).Scan(&errText) == nil
	})
	if strings.Contains(errText, "s3cret") || !strings.Contains(errText, "127.0.0.1") {
		t.Errorf("attempt error %q: the URL shown, or not the host", errText)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the worker's log shows the URL: %s", logs.String())
	}
}
