package main

import (
	"bytes"
	"context"
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
	// its 2 s readers; the others are quick at any length (partman's timeline
	// is fixed).
	for _, args := range [][]string{
		{"-run", "^(log_event|seal|retention_retire|import|api)$", "-duration", "200ms"},
		{"-run", "^(retention_stall|partman)$", "-duration", "8s"},
	} {
		err := run(context.Background(), append([]string{"-database-url", admin, "-scale", "0.0005"}, args...), &out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	}
	for _, want := range []string{"log_event tx/s", "retire one day", "worst log_event latency", "pg_partman run_maintenance()", "import rows/s",
		"API first page", "commit to sealed lag", "CSV export rows/s", "API server peak RSS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q row:\n%s", want, out.String())
		}
	}
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
