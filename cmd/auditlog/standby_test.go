package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// TestServeFromAStandby serves the API from a hot standby of the test
// server: once the standby has replayed the primary's WAL, a page (and its
// next page by the primary's cursor), the exports, the summary, the feed,
// the checkpoints, the subscriptions, the catalog and the seal keys read
// there equal the primary's; a browser signs in there; a token minted on the
// primary works there once replayed; /healthz and /metrics report the replay
// lag, and say it is a primary once promoted; an export cancelled by a
// replay conflict fails rather than looking complete. The retention worker, the
// sealer and the delivery worker refuse the standby, alone or in serve,
// before making the key file they were asked to.
func TestServeFromAStandby(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	onStandby := testdb.Standby(t)
	ctx := context.Background()

	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "team"})
	_, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})
	e, out := testEnv(t)
	if err := run(ctx, []string{"token", "create", "--org", org, "--email", email, "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	stopSealer := sealtest.Start(t, url, sealer.Config{})
	for range 5 {
		fixture.Event(t, pool, fixture.EventOpts{OrgID: org, ActorEmail: "ann@example.com"})
	}
	sealtest.WaitSealed(t, pool, org, 6) // pat.created too
	stopSealer()                         // nothing changes between a read on the primary and on the standby

	reader := testdb.Role(t, url, "audit_reader")
	testdb.WaitReplayed(t, url, onStandby(url))
	primary := serveAt(t, serveConfig{dbURL: reader, retention: retentionFlags{disabled: true}, seal: sealFlags{disabled: true}})
	standby := serveAt(t, serveConfig{dbURL: onStandby(reader), retention: retentionFlags{disabled: true}, seal: sealFlags{disabled: true}})

	api := "/api/orgs/" + org + "/audit"
	// A summary's end is at most now: one in the past is the same on both.
	until := time.Now().UTC()
	span := "?since=" + until.Add(-time.Hour).Format(time.RFC3339Nano) + "&until=" + until.Format(time.RFC3339Nano)
	_, first := fetch(t, primary+api+"?limit=2", token)
	cursor := first[strings.Index(first, `"next_cursor":"`)+len(`"next_cursor":"`):]
	cursor = cursor[:strings.IndexByte(cursor, '"')]
	for _, path := range []string{api + "?limit=2", api + "?limit=2&cursor=" + cursor, api + "?format=csv", api + "?format=ndjson",
		api + "/summary" + span, api + "/feed?after=0", api + "/checkpoints", api + "/streams", "/api/audit/actions", "/api/audit/keys"} {
		code, want := fetch(t, primary+path, token)
		if code != http.StatusOK {
			t.Fatalf("%s on the primary: %d %s", path, code, want)
		}
		if code, got := fetch(t, standby+path, token); code != http.StatusOK || movesWithTheClock(got) != movesWithTheClock(want) {
			t.Errorf("%s on the standby: %d\n%s\nwant (the primary's)\n%s", path, code, got, want)
		}
	}
	if !strings.Contains(first, `"seq":6`) {
		t.Errorf("the page shows no sealed event: %s", first)
	}

	// Sign in as the Activity page does, then read with the cookie alone.
	req, _ := http.NewRequest(http.MethodPost, standby+"/api/session", strings.NewReader(`{"token": "`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in on the standby: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	req, _ = http.NewRequest(http.MethodGet, standby+api+"?limit=2", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a page by the session cookie on the standby: %d", resp.StatusCode)
	}

	if code, body := fetch(t, standby+"/healthz", ""); code != http.StatusOK || !strings.Contains(body, `"standby":true`) || !strings.Contains(body, `"replay_lag_seconds":`) {
		t.Errorf("healthz on the standby: %d %s", code, body)
	}
	if code, body := fetch(t, primary+"/healthz", ""); code != http.StatusOK || !strings.Contains(body, `"standby":false`) || strings.Contains(body, "replay_lag") {
		t.Errorf("healthz on the primary: %d %s", code, body)
	}
	if code, body := fetch(t, standby+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "\nauditlog_replay_lag_seconds ") ||
		!strings.Contains(body, "\nauditlog_database_standby 1") {
		t.Errorf("metrics on the standby: %d, want 200 with the replay lag:\n%s", code, body)
	}
	if _, body := fetch(t, primary+"/metrics", ""); !strings.Contains(body, "\nauditlog_database_standby 0") || strings.Contains(body, "\nauditlog_replay_lag_seconds ") {
		t.Errorf("metrics on the primary: want standby 0 and no replay lag:\n%s", body)
	}

	// A token the standby has not replayed yet is refused there, and
	// accepted as soon as it is replayed: not remembered as unknown.
	t.Run("token minted ahead of the standby", func(t *testing.T) {
		standbyAdmin := testdb.Pool(t, onStandby(url))
		if _, err := standbyAdmin.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
			t.Fatal(err)
		}
		for state := ""; state != "paused"; time.Sleep(10 * time.Millisecond) {
			if err := standbyAdmin.QueryRow(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state); err != nil {
				t.Fatal(err)
			}
		}
		e, out := testEnv(t)
		if err := run(ctx, []string{"token", "create", "--org", org, "--email", email, "--database-url", url}, e.stdout, e.stderr); err != nil {
			t.Fatal(err)
		}
		fresh := strings.TrimSpace(out.String())
		if code, body := fetch(t, standby+api+"?limit=1", fresh); code != http.StatusUnauthorized {
			t.Fatalf("a token the standby has not replayed: %d %s, want 401", code, body)
		}
		if _, err := standbyAdmin.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
			t.Fatal(err)
		}
		testdb.WaitReplayed(t, url, onStandby(url))
		if code, body := fetch(t, standby+api+"?limit=1", fresh); code != http.StatusOK {
			t.Errorf("the token once the standby replayed it: %d %s, want 200", code, body)
		}
	})

	// An export whose query replay cancels (a lock the primary took on the
	// leaf it reads, past max_standby_streaming_delay) ends without its final
	// chunk and manifest: a failed download, not a complete-looking file.
	t.Run("export cut by a replay conflict", func(t *testing.T) {
		var leaf string
		if err := pool.QueryRow(ctx, `SELECT 'audit.events_team_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')`).Scan(&leaf); err != nil {
			t.Fatal(err)
		}
		// About 30 MB of CSV: more than the sockets between the standby, the
		// API and the client hold, so the export is still reading the leaf
		// while the client pauses.
		if _, err := pool.Exec(ctx, `INSERT INTO `+leaf+` (id, org_id, occurred_at, action, target_type, actor_type, actor_email, metadata)
			SELECT gen_random_uuid(), $1, now() - g * interval '1 ms', a.action, a.target_type, 'user', 'ann@example.com', jsonb_build_object('pad', repeat('x', 300))
			FROM audit.actions a, generate_series(1, 80000) g WHERE a.action = 'cluster.created'`, org); err != nil {
			t.Fatal(err)
		}
		standbyAdmin := testdb.Pool(t, onStandby(url))
		if _, err := standbyAdmin.Exec(ctx, "ALTER SYSTEM SET max_standby_streaming_delay = '100ms'"); err != nil {
			t.Fatal(err)
		}
		if _, err := standbyAdmin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		testdb.WaitReplayed(t, url, onStandby(url))
		req, _ := http.NewRequest(http.MethodGet, standby+api+"?format=csv", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("the export's first MB: %d %v", resp.StatusCode, err)
		}
		// Sent at once (the test server commits asynchronously), well within
		// the API's floor for a client that pauses.
		if _, err := pool.Exec(ctx, "BEGIN; SET LOCAL synchronous_commit = on; LOCK TABLE "+leaf+" IN ACCESS EXCLUSIVE MODE; COMMIT"); err != nil {
			t.Fatal(err)
		}
		// The standby's replay waits for the export's lock, then cancels its
		// query; the backend, blocked on the paused client, raises the error
		// once the client reads on (well before the API's floor would cut a
		// client paused for 10 s).
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			var waiting bool
			if err := standbyAdmin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
				WHERE backend_type = 'startup' AND wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the standby's replay did not wait for the export's lock in a minute")
			}
		}
		time.Sleep(time.Second)
		rest, err := io.ReadAll(resp.Body)
		if err == nil || resp.Trailer.Get("Audit-Manifest") != "" {
			t.Errorf("export cut by a replay conflict: read %d more bytes, error %v, manifest %q; want a failed download without a manifest",
				len(rest), err, resp.Trailer.Get("Audit-Manifest"))
		}
		var conflicts int64
		for deadline := time.Now().Add(time.Minute); conflicts == 0; time.Sleep(50 * time.Millisecond) {
			if err := standbyAdmin.QueryRow(ctx, `SELECT confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock
				FROM pg_stat_database_conflicts WHERE datname = current_database()`).Scan(&conflicts); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("replay cancelled no query of the standby in a minute")
			}
		}
		testdb.WaitReplayed(t, url, onStandby(url))
	})

	t.Run("workers refuse", func(t *testing.T) {
		dir := t.TempDir()
		super := onStandby(url)
		for _, args := range [][]string{
			{"retention", "run", "--database-url", super},
			{"seal", "--database-url", super, "--seal-key", filepath.Join(dir, "seal.pem"), "--create-key"},
			{"deliver", "--database-url", super, "--delivery-key", filepath.Join(dir, "delivery.pem"), "--create-delivery-key"},
		} {
			err := run(ctx, args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "is a standby") || !strings.Contains(err.Error(), "primary") {
				t.Errorf("%s against a standby: %v; want it refused, naming the primary", args[0], err)
			}
		}
		// Refused before any work: not even the key file asked for is made.
		for _, key := range []string{"seal.pem", "delivery.pem"} {
			if _, err := os.Stat(filepath.Join(dir, key)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s after refusing the standby: %v, want not made", key, err)
			}
		}
		err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--database-url", super, "--seal-key", filepath.Join(dir, "seal.pem"),
			"--delivery-key", filepath.Join(dir, "delivery.pem")}, io.Discard, io.Discard)
		for _, want := range []string{"is a standby", "--no-retention", "--no-sealer", "--no-delivery", "--retention-database-url"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("serve against a standby with its workers: %v; want it to mention %q", err, want)
			}
		}
	})
	// Promoted (a failover), the same server is a primary at once: the
	// replica's /healthz and /metrics say so, with no replay lag.
	t.Run("promoted", func(t *testing.T) {
		standbyAdmin := testdb.Pool(t, onStandby(url))
		var promoted bool
		if err := standbyAdmin.QueryRow(ctx, "SELECT pg_promote()").Scan(&promoted); err != nil || !promoted {
			t.Fatalf("pg_promote: %v %v", promoted, err)
		}
		if code, body := fetch(t, standby+"/healthz", ""); code != http.StatusOK || !strings.Contains(body, `"standby":false`) || strings.Contains(body, "replay_lag") {
			t.Errorf("healthz once promoted: %d %s", code, body)
		}
		if _, body := fetch(t, standby+"/metrics", ""); !strings.Contains(body, "\nauditlog_database_standby 0") || strings.Contains(body, "\nauditlog_replay_lag_seconds ") {
			t.Errorf("metrics once promoted: want standby 0 and no replay lag:\n%s", body)
		}
	})
}

// serveAt runs serve with cfg on a free port until the test ends and
// returns its base URL.
func serveAt(t *testing.T, cfg serveConfig) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg.addr, cfg.ready = "127.0.0.1:0", func(a net.Addr) { addrc <- a }
	e, _ := testEnv(t)
	go func() { done <- serve(ctx, e, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-addrc:
		return fmt.Sprintf("http://%s", a)
	case err := <-done:
		done <- err
		t.Fatalf("serve ended early: %v", err)
		return ""
	}
}

// fetch GETs url with token (if any) and returns the status and body.
func fetch(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b.String()
}

// keptSince is the summary's retention floor: the plan's retention back
// from the database's clock at the request, which moves between two reads.
var keptSince = regexp.MustCompile(`"kept_since":"[^"]*"`)

// movesWithTheClock blanks what of a response depends on when it was read.
func movesWithTheClock(body string) string {
	return keptSince.ReplaceAllString(body, `"kept_since":""`)
}
