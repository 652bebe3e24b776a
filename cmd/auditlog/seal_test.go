package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/testdb"
	"github.com/auditlog/auditlog/sealer"
)

// serve runs the sealer: an event recorded while it serves gets seq 1, and
// --create-key makes the key file, readable by its owner only.
func TestServeRunsTheSealer(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	keyPath := filepath.Join(t.TempDir(), "seal-key.pem")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	e, _ := testEnv(t)
	go func() {
		done <- serve(ctx, e, serveConfig{addr: "127.0.0.1:0", dbURL: url,
			retention: retentionFlags{disabled: true},
			seal:      sealFlags{dbURL: sealtest.SealerURL(t, url), keyPath: keyPath, createKey: true},
			ready:     func(net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	}
	fixture.Event(t, pool, fixture.EventOpts{OrgID: org})
	sealtest.WaitSealed(t, pool, org, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
}

// serve refuses to start a sealer it could not run (no key; a role without
// REPLICATION, such as the API's) and says which flag fixes it.
func TestServeRefusesASealerThatCannotSeal(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	reader := testdb.Role(t, url, "audit_reader")
	keyPath := filepath.Join(t.TempDir(), "seal-key.pem")
	for _, c := range []struct {
		name string
		seal sealFlags
		want []string
	}{
		{"no key", sealFlags{dbURL: sealtest.SealerURL(t, url)}, []string{"--seal-key", "--create-key"}},
		{"missing key file", sealFlags{dbURL: sealtest.SealerURL(t, url), keyPath: keyPath}, []string{"seal key", "no such file"}},
		{"reader role", sealFlags{keyPath: keyPath, createKey: true}, []string{"REPLICATION", "--sealer-database-url", "--no-sealer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := testEnv(t)
			err := serve(context.Background(), e, serveConfig{addr: "127.0.0.1:0", dbURL: reader,
				retention: retentionFlags{disabled: true}, seal: c.seal,
				ready: func(net.Addr) { t.Error("served with a sealer that cannot seal") }})
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v; want it to mention %q", err, w)
				}
			}
		})
	}
}

// verify --org says the chain verifies, and, once a superuser changed a
// stored event behind the triggers' back, where it breaks (exit status 1).
func TestVerifyFindsAChangedEvent(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	pool := testdb.Pool(t, url)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	sealtest.Start(t, url, sealer.Config{})
	var ids []string
	for range 3 {
		ids = append(ids, fixture.Event(t, pool, fixture.EventOpts{OrgID: org, Action: "auth.signin"}))
	}
	sealtest.WaitSealed(t, pool, org, 3)
	reader := testdb.Role(t, url, "audit_reader")
	ctx := context.Background()

	e, out := testEnv(t)
	if err := run(ctx, []string{"verify", "--org", org, "--database-url", reader}, e.stdout, e.stderr); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "chain verified, seq 1 to 3") {
		t.Fatalf("verify printed %q", out)
	}

	// As a superuser with triggers off for the session: one transaction.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		t.Fatal(err)
	}
	if tag, err := tx.Exec(ctx, "UPDATE audit.events_free SET action = 'auth.signout' WHERE id = $1", ids[1]); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v %v", tag, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	e, out = testEnv(t)
	err = run(ctx, []string{"verify", "--org", org, "--database-url", reader}, e.stdout, e.stderr)
	if !errors.Is(err, errBroken) || !strings.Contains(out.String(), "chain BROKEN at seq 2 (event "+ids[1]+")") {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}
}
