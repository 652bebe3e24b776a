package pglocal_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/auditlog/auditlog/internal/pglocal"
)

// TestMain fails the package if a cluster's watcher or a connection is left
// running after the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClusterLifecycle starts a cluster in a fresh directory, reuses it from a
// second user, and checks that only the last user's Close stops the server
// and that a later Start brings the same data back.
func TestClusterLifecycle(t *testing.T) {
	ctx, dir := clusterTest(t)

	first, err := pglocal.Start(ctx, pglocal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("cluster not initialised: %v", err)
	}
	exec(t, ctx, first.URL("postgres"), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
	pid := postmasterPID(t, dir)

	second, err := pglocal.Start(ctx, pglocal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := postmasterPID(t, dir); got != pid {
		t.Fatalf("second Start started a new server (pid %s, was %s)", got, pid)
	}

	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The second user still holds it: the server must still answer.
	exec(t, ctx, second.URL("postgres"), "SELECT 1")

	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("server still running after the last Close (postmaster.pid: %v)", err)
	}

	again, err := pglocal.Start(ctx, pglocal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	var n int
	if err := queryRow(ctx, again.URL("postgres"), "SELECT n FROM kept", &n); err != nil || n != 42 {
		t.Fatalf("reused cluster lost its data: n=%d err=%v", n, err)
	}
}

func TestDefaultDirIsKeyedByProject(t *testing.T) {
	t.Setenv("AUDITLOG_PGDIR", "")
	a, err := pglocal.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	b, err := pglocal.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two projects share the cluster directory %s", a)
	}
	if os.Geteuid() == 0 && filepath.Dir(filepath.Dir(a)) != "/var/tmp" {
		t.Fatalf("as root the cluster must live where an unprivileged user can reach it, got %s", a)
	}
}

// clusterTest skips a test that initialises a cluster under -short, else
// gives it two minutes and a fresh directory.
func clusterTest(t *testing.T) (context.Context, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("initialises a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, shortTempDir(t)
}

// shortTempDir is a directory short enough for a unix socket path, which
// t.TempDir's long names can exceed, and reachable by the server's user.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func postmasterPID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

func exec(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

func queryRow(ctx context.Context, url, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// A Start interrupted while initdb runs (a Ctrl-C on the first make run)
// leaves nothing a later Start takes for a cluster: that one initialises it
// anew, and it serves on its socket.
func TestInitdbCutShortIsRedone(t *testing.T) {
	ctx, dir := clusterTest(t)

	// Interrupted once initdb has written its first files.
	startCtx, interrupt := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for startCtx.Err() == nil {
			if m, _ := filepath.Glob(filepath.Join(dir, "*", "PG_VERSION")); len(m) > 0 {
				interrupt()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	c, err := pglocal.Start(startCtx, pglocal.Options{Dir: dir})
	interrupt()
	<-watched
	if err == nil {
		c.Close(ctx)
		t.Fatal("Start finished before the interruption; nothing was cut short")
	}

	again, err := pglocal.Start(ctx, pglocal.Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start after an interrupted initdb: %v", err)
	}
	defer again.Close(ctx)
	exec(t, ctx, again.URL("postgres"), "SELECT 1")
}
