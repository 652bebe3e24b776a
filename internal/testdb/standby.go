package testdb

import (
	"context"
	neturl "net/url"
	"testing"
	"time"
)

// Standby starts a hot standby of the local test server (a copy by
// pg_basebackup, streaming its WAL; pglocal.Cluster.StartStandby), stopped
// when the test ends, and returns a function that maps a URL of the test
// server (any database, any role) to the same on the standby. The test is
// skipped when $TEST_DATABASE_URL names the server: it may be out of reach of
// pg_basebackup here.
func Standby(t testing.TB) func(url string) string {
	t.Helper()
	AdminURL(t)
	if cluster == nil {
		t.Skip("TEST_DATABASE_URL is set: no standby of a server this process did not start")
	}
	s, err := cluster.StartStandby(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	at, _ := neturl.Parse(s.URL(""))
	return func(url string) string {
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("host", at.Query().Get("host"))
		q.Set("port", at.Query().Get("port"))
		u.RawQuery = q.Encode()
		return u.String()
	}
}

// WaitReplayed waits until the standby at standbyURL has replayed all the
// WAL the primary at primaryURL had written when it was called.
func WaitReplayed(t testing.TB, primaryURL, standbyURL string) {
	t.Helper()
	ctx := context.Background()
	primary, standby := connect(t, primaryURL), connect(t, standbyURL)
	defer primary.Close(ctx)
	defer standby.Close(ctx)
	// The test server commits asynchronously: what was committed may not be
	// written yet, so pg_current_wal_lsn() may lie before it. A commit with
	// synchronous_commit on that wrote WAL (a transactional message) flushes
	// the WAL up to itself, so everything committed before it.
	tx, err := primary.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, "SET LOCAL synchronous_commit = on; SELECT pg_logical_emit_message(true, 'testdb', 'wait replayed')")
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	var lsn string
	if err == nil {
		err = primary.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var done bool
		if err := standby.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby has not replayed the primary's WAL up to %s in a minute", lsn)
		}
	}
}
