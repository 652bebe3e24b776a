// Package sealtest runs a sealer for a test: as a login role of audit_sealer
// with REPLICATION, on the test's own database, until the test ends.
package sealtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// Key makes a signing key.
func Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// SealerURL makes a login role fit to run a sealer on the database at dbURL
// (a superuser URL) and returns a URL connecting as it.
func SealerURL(t testing.TB, dbURL string) string {
	t.Helper()
	u := testdb.Role(t, dbURL, "audit_sealer")
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := database.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{parsed.User.Username()}.Sanitize()+" REPLICATION"); err != nil {
		t.Fatal(err)
	}
	return u
}

// Start runs a sealer on the database at dbURL with cfg (its DatabaseURL,
// Key and Logger filled in when empty) and returns once its slot is ready.
// The sealer stops when the test ends, or when stop is called.
func Start(t testing.TB, dbURL string, cfg sealer.Config) (stop func()) {
	t.Helper()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = SealerURL(t, dbURL)
	}
	if cfg.Key == nil {
		cfg.Key = Key(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sealer.Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sealer: %v", err)
		}
	}
	t.Cleanup(stop)
	pool := testdb.Pool(t, dbURL)
	WaitFor(t, pool, "the sealer's slot", func(ctx context.Context) (bool, error) {
		var ready bool
		err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM audit.sealer_progress WHERE lsn <> '0/0')").Scan(&ready)
		return ready, err
	})
	return stop
}

// WaitSealed waits until org orgID's head reaches seq n.
func WaitSealed(t testing.TB, pool *pgxpool.Pool, orgID string, n int64) {
	t.Helper()
	WaitFor(t, pool, fmt.Sprintf("org %s sealed to seq %d", orgID, n), func(ctx context.Context) (bool, error) {
		var seq int64
		err := pool.QueryRow(ctx, "SELECT coalesce((SELECT seq FROM audit.seal_heads WHERE org_id = $1), 0)", orgID).Scan(&seq)
		return seq >= n, err
	})
}

// WaitCheckpoint waits until a checkpoint of org orgID is signed at seq n.
func WaitCheckpoint(t testing.TB, pool *pgxpool.Pool, orgID string, n int64) {
	t.Helper()
	WaitFor(t, pool, fmt.Sprintf("a checkpoint of org %s at seq %d", orgID, n), func(ctx context.Context) (bool, error) {
		var ok bool
		err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM audit.checkpoints WHERE org_id = $1 AND seq = $2)", orgID, n).Scan(&ok)
		return ok, err
	})
}

// WaitFor polls cond until it holds, failing the test after a minute.
func WaitFor(t testing.TB, pool *pgxpool.Pool, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := cond(context.Background())
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tamper runs sql as the superuser of pool with the immutability triggers
// off (session_replication_role = replica), as an attacker holding the
// database would, and fails the test unless it changed a row.
func Tamper(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("no row changed")
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
