package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/store"
)

// TestStreamsShowNoSecrets: an owner lists the org's subscriptions with
// their rule, host, state, lag and latest attempts, and nothing of the
// sealed destination; /metrics counts it and its lag (0: no sealer runs
// here); a member who is not an owner is refused.
func TestStreamsShowNoSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	ctx := context.Background()
	key := strings.Repeat("ab", 32)
	if _, err := b.admin.Exec(ctx, "INSERT INTO audit.delivery_keys (key_id, public_key) VALUES ('k1', decode($1, 'hex'))", key); err != nil {
		t.Fatal(err)
	}
	var id string
	err := b.admin.QueryRow(ctx, `
		SELECT audit.subscribe($1, 'siem', 'webhook', 'hooks.example.com', 'k1', convert_to('SECRET-MARKER https://hooks.example.com/x', 'UTF8'),
		                       '{cluster.*}', '{}', '{}')::text`, org).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.Exec(ctx, "SELECT audit.record_delivery($1, 0, 0, false, now(), 503, 12, 1, 3, 3, 'answered 503')", id); err != nil {
		t.Fatal(err)
	}
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/streams", token)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "SECRET-MARKER") || strings.Contains(string(body), "/x") {
		t.Fatalf("GET streams: %d %s", resp.StatusCode, body)
	}
	var got struct{ Streams []store.Stream }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Streams) != 1 {
		t.Fatalf("streams %s", body)
	}
	s := got.Streams[0]
	if s.ID != id || s.Host != "hooks.example.com" || s.State != "active" || len(s.Actions) != 1 || s.Actions[0] != "cluster.*" ||
		len(s.Attempts) != 1 || *s.Attempts[0].Status != 503 || s.Attempts[0].LastSeq != 3 || s.FailingSince == nil || time.Since(*s.FailingSince) > time.Minute {
		t.Errorf("stream %s", body)
	}

	_, metrics := b.get(t, "/metrics", "")
	for _, want := range []string{`auditlog_delivery_subscriptions{kind="webhook",state="active"} 1`, `auditlog_delivery_lag_events{kind="webhook"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "member"})
	if resp, _ := b.get(t, "/api/orgs/"+org+"/audit/streams", b.token(t, member, tokenOpts{})); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a member: %d, want 403", resp.StatusCode)
	}
}
