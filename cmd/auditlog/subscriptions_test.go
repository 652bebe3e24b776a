package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/delivery"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// TestSubscriptionsCommand: add (refused without the allow-list for a
// local receiver; the secret shown once), list, pause, test (the
// receiver's self-signed certificate is not trusted: TLS is verified),
// rm; each change records its audit_stream event as the --as person.
func TestSubscriptionsCommand(t *testing.T) {
	t.Parallel()
	url, pool, org, keyPath, srv := subscriptionsEnv(t)
	ctx := context.Background()

	sub := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append(append([]string{"subscriptions"}, args...), "--org", org, "--database-url", url, "--as", "ops@example.com"), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	if _, _, err := sub("add", "--name", "siem", "--url", srv.URL+"/hook"); err == nil || !strings.Contains(err.Error(), "refused address") {
		t.Errorf("add to a loopback receiver without --delivery-allow: %v", err)
	}
	out, errOut, err := sub("add", "--name", "siem", "--url", srv.URL+"/hook", "--action", "cluster.*,pat.created", "--delivery-allow", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	if !strings.Contains(errOut, "whsec_") {
		t.Errorf("add printed no secret: %q", errOut)
	}
	if _, _, err := sub("pause", id); err != nil {
		t.Fatal(err)
	}
	if out, _, err := sub("list"); err != nil || !strings.Contains(out, "siem") || !strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "paused") {
		t.Errorf("list: %v\n%s", err, out)
	}
	if _, _, err := sub("test", id, "--delivery-key", keyPath, "--delivery-allow", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("test against an untrusted certificate: %v", err)
	}
	if _, _, err := sub("rm", id); err != nil {
		t.Fatal(err)
	}
	var events []string
	rows, _ := pool.Query(ctx, "SELECT action || ' ' || actor_email FROM audit.events WHERE org_id = $1 AND target_id = $2 ORDER BY occurred_at", org, id)
	for rows.Next() {
		var s string
		rows.Scan(&s)
		events = append(events, s)
	}
	if got := strings.Join(events, ","); got != "audit_stream.created ops@example.com,audit_stream.updated ops@example.com,audit_stream.deleted ops@example.com" {
		t.Errorf("events %s", got)
	}
}

// TestServeRefusesAReaderForDelivery: serve with delivery on and the API's
// audit_reader role for it stops before serving and names the flags.
func TestServeRefusesAReaderForDelivery(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	reader := testdb.Role(t, url, "audit_reader")
	e, _ := testEnv(t)
	err := serve(context.Background(), e, serveConfig{addr: "127.0.0.1:0", dbURL: reader, seal: sealFlags{disabled: true},
		retention: retentionFlags{disabled: true},
		deliver:   &deliverFlags{keyPath: filepath.Join(t.TempDir(), "k.pem"), createKey: true}})
	if err == nil || !strings.Contains(err.Error(), "audit_deliverer") || !strings.Contains(err.Error(), "--no-delivery") {
		t.Errorf("serve: %v", err)
	}
}

// TestSubscriptionsAddTakesSecretsFromTheEnvironment: add reads the URL
// and the HEC token from the environment, so neither is on a command line
// other users see with ps. Not parallel: it sets the environment.
func TestSubscriptionsAddTakesSecretsFromTheEnvironment(t *testing.T) {
	url, pool, org, keyPath, srv := subscriptionsEnv(t)
	ctx := context.Background()
	t.Setenv("AUDITLOG_SUBSCRIPTION_URL", srv.URL+"/services/collector/event")
	t.Setenv("AUDITLOG_SUBSCRIPTION_TOKEN", "hec-secret")
	t.Setenv("AUDITLOG_DELIVERY_ALLOW", "127.0.0.1")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"subscriptions", "add", "--org", org, "--database-url", url, "--as", "ops@example.com", "--name", "hec", "--kind", "splunk_hec"}, &out, &errOut); err != nil {
		t.Fatalf("add: %v\n%s", err, errOut.String())
	}
	id := strings.TrimSpace(out.String())
	var sealed []byte
	if err := pool.QueryRow(ctx, "SELECT sealed FROM audit.subscriptions WHERE id = $1", id).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	key, err := delivery.LoadOrCreateKey(keyPath, false)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := delivery.Open(key, sealed); err != nil || d.URL != srv.URL+"/services/collector/event" || d.Token != "hec-secret" {
		t.Errorf("sealed destination %+v, %v", d, err)
	}
}

// subscriptionsEnv is a test database with an org and the worker's key
// registered (keyPath), and a local HTTPS receiver answering 200.
func subscriptionsEnv(t *testing.T) (url string, pool *pgxpool.Pool, org, keyPath string, srv *httptest.Server) {
	t.Helper()
	url = testdb.New(t)
	pool = testdb.Pool(t, url)
	org = fixture.Org(t, pool, fixture.OrgOpts{})
	keyPath = registeredKey(t, pool, t.TempDir())
	srv = httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	return url, pool, org, keyPath, srv
}
