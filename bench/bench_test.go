package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// TestEveryBenchmarkRuns runs the whole suite at a tiny scale, so a change
// that breaks a benchmark fails make test instead of the next make bench.
// The figures mean nothing at this scale and are not checked; that each
// benchmark runs to its row is.
func TestEveryBenchmarkRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark suite")
	}
	admin := testdb.AdminURL(t)
	t.Cleanup(func() { dropBenchDatabases(t, admin) })
	var out bytes.Buffer
	// The stall benchmark needs phases long enough for a detach to wait out
	// its 2 s readers; the others are quick at any length (partman's
	// timeline is fixed).
	runs := [][]string{
		{"-run", "^(log_event|seal|retention_retire|import|api|delivery|large)$", "-duration", "200ms"},
		{"-run", "^retention_stall$", "-duration", "8s"},
	}
	wants := []string{"log_event tx/s", "retire one day", "worst log_event latency", "import rows/s", "API first page",
		"commit to sealed lag", "CSV export rows/s", "API server peak RSS", "size on disk", "relations locked", "feed via HTTP",
		"re-tiering one org", "commit to webhook receiver latency"}
	// pg_partman comes from a package the bench installs as root with
	// apt-get; elsewhere (macOS, not root) its comparison is left out.
	if err := partmanAvailable(admin); err != nil {
		t.Logf("not running the pg_partman comparison: %v", err)
	} else {
		runs = append(runs, []string{"-run", "^partman$"})
		wants = append(wants, "pg_partman run_maintenance()")
	}
	for _, args := range runs {
		err := run(context.Background(), append([]string{"-database-url", admin, "-scale", "0.0005"}, args...), &out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q row:\n%s", want, out.String())
		}
	}
}

// partmanAvailable makes sure the server offers pg_partman, installing it
// if it can, or says why not.
func partmanAvailable(admin string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	b := &bench{logger: slog.New(slog.DiscardHandler)}
	return b.ensurePartman(ctx, conn)
}

// dropBenchDatabases removes what the suite made in the test server.
func dropBenchDatabases(t *testing.T, admin string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'auditlog\\_bench\\_%'")
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Error(err)
		return
	}
	for _, name := range names {
		if err := database.DropDatabase(ctx, conn, name); err != nil {
			t.Error(err)
		}
	}
}
