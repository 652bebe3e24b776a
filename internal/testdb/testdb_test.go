package testdb

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
)

func TestMain(m *testing.M) { Main(m) }

// A template that another test process uses (another checkout's, of another
// schema, on the same server) outlives this process's clean-up; an unused
// one does not.
func TestDropStaleTemplatesLeavesUsedOnes(t *testing.T) {
	ctx := context.Background()
	admin, err := database.Connect(ctx, AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	suffix := randomHex(6)
	used, unused := "auditlog_tpl_used_"+suffix, "auditlog_tpl_unused_"+suffix
	for _, name := range []string{used, unused} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin, err := database.Connect(ctx, adminURL)
		if err == nil {
			admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{used}.Sanitize())
			admin.Close(ctx)
		}
	})
	other, err := holdTemplate(ctx, used)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)

	if err := dropStaleTemplates(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{used: true, unused: false, template: true} {
		var exists bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists != want {
			t.Errorf("template %s: exists %v, want %v", name, exists, want)
		}
	}
}

// TestWaitReplayedSeesTheLastCommit: once WaitReplayed returns, the
// standby shows what the primary committed just before, although the test
// server commits asynchronously (its WAL may not be written yet).
func TestWaitReplayedSeesTheLastCommit(t *testing.T) {
	t.Parallel()
	url := New(t)
	onStandby := Standby(t)
	ctx := context.Background()
	primary, standby := Pool(t, url), Pool(t, onStandby(url))
	if _, err := primary.Exec(ctx, "CREATE TABLE replayed (n int)"); err != nil {
		t.Fatal(err)
	}
	WaitReplayed(t, url, onStandby(url))
	var made bool
	if err := standby.QueryRow(ctx, "SELECT to_regclass('replayed') IS NOT NULL").Scan(&made); err != nil || !made {
		t.Fatalf("a table made on the primary before WaitReplayed is not on the standby after it (%v)", err)
	}
	for n := range 20 {
		if _, err := primary.Exec(ctx, "INSERT INTO replayed VALUES ($1)", n); err != nil {
			t.Fatal(err)
		}
		WaitReplayed(t, url, onStandby(url))
		var seen bool
		if err := standby.QueryRow(ctx, "SELECT EXISTS (SELECT FROM replayed WHERE n = $1)", n).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if !seen {
			t.Fatalf("row %d committed on the primary before WaitReplayed is not on the standby after it", n)
		}
	}
}
