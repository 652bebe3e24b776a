package main

import (
	"context"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/testdb"
)

// expiredLeaf stores a free org's event ten days ago, in a leaf a pass drops.
func expiredLeaf(t *testing.T, url string) string {
	t.Helper()
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "free"})
	when := time.Now().Add(-10 * 24 * time.Hour)
	fixture.Event(t, pool, fixture.EventOpts{OrgID: org, OccurredAt: when})
	return "events_free_p" + when.UTC().Format("20060102")
}

// `retention run --dry-run` says what it would drop and drops nothing; the
// real pass says what it dropped; a clock in the future is refused.
func TestRetentionRunCommand(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	leaf := expiredLeaf(t, url)
	ctx := context.Background()
	e, out := testEnv(t)

	if err := run(ctx, []string{"retention", "run", "--dry-run", "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "dry run: nothing changed") || !strings.Contains(out.String(), "Leaves to drop: 1\n  "+leaf) {
		t.Fatalf("dry run output:\n%s", out)
	}
	out.Reset()
	if err := run(ctx, []string{"retention", "run", "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Leaves dropped: 1\n  "+leaf) || !regexp.MustCompile(`recorded as run \d+`).MatchString(out.String()) {
		t.Fatalf("pass output:\n%s", out)
	}
	out.Reset()
	future := time.Now().Add(48 * time.Hour).Format(time.RFC3339)
	err := run(ctx, []string{"retention", "run", "--now", future, "--database-url", url}, e.stdout, e.stderr)
	if err == nil || !strings.Contains(err.Error(), "AL011") {
		t.Fatalf("pass with --now %s: %v, want it refused (AL011)", future, err)
	}
}

// `partitions` prints a row per leaf with its range, expiry and state, a
// total per tier, and what keeps each expired leaf.
func TestPartitionsCommand(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	leaf := expiredLeaf(t, url)
	e, out := testEnv(t)
	if err := run(context.Background(), []string{"partitions", "--database-url", url}, e.stdout, e.stderr); err != nil {
		t.Fatal(err)
	}
	day := strings.TrimPrefix(leaf, "events_free_p")
	day = day[:4] + "-" + day[4:6] + "-" + day[6:]
	row := regexp.MustCompile(`(?m)^free\s+` + leaf + `\s+` + day + `\s+\S+\s+\S+\s+\S+\s+\d+ \S+\s+expired$`)
	held := regexp.MustCompile(`(?m)^  ` + leaf + ` \(free, expired \S+ \S+ UTC, attached\): held by nothing: the next retention pass drops it$`)
	if !strings.HasPrefix(out.String(), "TIER ") || !row.MatchString(out.String()) || !strings.Contains(out.String(), "free: 1 leaf, ") ||
		!held.MatchString(out.String()) {
		t.Fatalf("partitions output:\n%s", out)
	}
}

// serve runs a retention pass at start unless --no-retention. serve returns
// only after its worker has stopped, and a worker logs "retention worker
// started" before it can stop, so the disabled case is checked on the logs of
// a finished serve, not by waiting for a pass that should not come.
func TestServeRunsTheRetentionWorker(t *testing.T) {
	t.Parallel()
	for _, disabled := range []bool{false, true} {
		url := testdb.New(t)
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		logs := new(fixture.Buffer)
		e, _ := testEnv(t)
		e.logger = slog.New(slog.NewTextHandler(logs, nil))
		go func() {
			done <- serve(ctx, e, serveConfig{addr: "127.0.0.1:0", dbURL: url,
				retention: retentionFlags{disabled: disabled}, seal: sealFlags{disabled: true}, ready: func(net.Addr) { close(ready) }})
		}()
		<-ready
		pool := testdb.Pool(t, url)
		runs := func() int {
			var n int
			if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM audit.retention_runs").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for deadline := time.Now().Add(10 * time.Second); !disabled && runs() == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		started := strings.Contains(logs.String(), "retention worker started")
		said := strings.Contains(logs.String(), "retention worker disabled")
		if got := runs(); (got > 0) == disabled || started == disabled || said != disabled {
			t.Errorf("--no-retention %v: %d passes recorded, worker started %v, said disabled %v; logs:\n%s",
				disabled, got, started, said, logs)
		}
	}
}

// serve refuses to start a worker on a role that could not run a pass, such
// as the API's audit_reader role, and says which flag fixes it.
func TestServeRefusesAWorkerWithoutMaintainer(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	reader := testdb.Role(t, url, "audit_reader")
	e, _ := testEnv(t)
	err := serve(context.Background(), e, serveConfig{addr: "127.0.0.1:0", dbURL: reader,
		ready: func(net.Addr) { t.Error("served with a worker that cannot work") }})
	if err == nil || !strings.Contains(err.Error(), "audit_maintainer") || !strings.Contains(err.Error(), "--retention-database-url") {
		t.Fatalf("got %v", err)
	}
}
