// Package testdb gives each test a real, migrated PostgreSQL database of its
// own. The schema is migrated once into a template database named after a
// hash of the migrations and code package; each test gets a CREATE DATABASE
// ... TEMPLATE copy, so tests are isolated and run in parallel. A failed
// test's database is kept and its URL logged.
//
// The server is $TEST_DATABASE_URL (a superuser URL) if set, else the
// project-local cluster of package pglocal. Packages using testdb call
// testdb.Main from TestMain, so the local cluster is released at the end.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/pglocal"
	"github.com/auditlog/auditlog/internal/schema"
)

// templateLock is the advisory lock key under which test processes take
// turns building the template database.
const templateLock = 7_246_160_913

// templateInUse is the first key of the shared advisory lock that a test
// process holds on its template, the second being hashtext of its name, for
// as long as it runs: a template no process holds is not used by any.
const templateInUse = 72_461_609

var (
	setupOnce sync.Once
	setupErr  error
	adminURL  string    // a superuser URL to the maintenance database
	template  string    // name of the migrated template database
	user      *pgx.Conn // holds the template's in-use lock while the tests run
	cluster   *pglocal.Cluster
)

// Main runs the package's tests, then the atExit functions (say, dropping a
// database made with Create), then releases the local cluster, which stops
// it if no other test process is using it.
func Main(m *testing.M, atExit ...func() error) {
	code := m.Run()
	for _, f := range atExit {
		if err := f(); err != nil {
			fmt.Fprintln(os.Stderr, "testdb:", err)
		}
	}
	if user != nil {
		user.Close(context.Background())
	}
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := cluster.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "testdb:", err)
		}
		cancel()
	}
	// A goroutine still running once every test is done is a pool, a server
	// or a worker that something forgot to stop.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "testdb: goroutines left running:", err)
		code = 1
	}
	os.Exit(code)
}

// AdminURL is a superuser URL to the server's maintenance database, for
// tests that manage databases themselves.
func AdminURL(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("test database server: %v", setupErr)
	}
	return adminURL
}

// NewEmpty creates an empty database for the test and returns its URL.
func NewEmpty(t testing.TB) string {
	t.Helper()
	return create(t, "")
}

// New creates a migrated database for the test and returns a superuser URL
// to it.
func New(t testing.TB) string {
	t.Helper()
	AdminURL(t)
	return create(t, template)
}

// NewPool is New with a pool on the database, closed when the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return Pool(t, New(t))
}

// Pool opens a pool on url, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := database.Pool(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Role creates a login role that is a member of the given group roles (say
// audit_writer) and returns a URL to the database at dbURL as that role. Role
// names are cluster-wide, so each is unique and dropped after the test.
func Role(t testing.TB, dbURL string, groups ...string) string {
	t.Helper()
	ctx := context.Background()
	name := "test_" + randomHex(6)
	admin := connect(t, dbURL)
	defer admin.Close(ctx)
	password := randomHex(16)
	exec(t, admin, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{name}.Sanitize(), password))
	for _, g := range groups {
		exec(t, admin, fmt.Sprintf("GRANT %s TO %s", pgx.Identifier{g}.Sanitize(), pgx.Identifier{name}.Sanitize()))
	}
	t.Cleanup(func() {
		if t.Failed() {
			return // the database is kept, and so is its role
		}
		c := connect(t, dbURL)
		defer c.Close(ctx)
		exec(t, c, fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'", name))
		exec(t, c, fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE %[1]s", pgx.Identifier{name}.Sanitize()))
	})
	u, err := database.WithUser(dbURL, name, password)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adminURL = os.Getenv("TEST_DATABASE_URL")
	if adminURL == "" {
		c, err := pglocal.Start(ctx, pglocal.Options{Logger: slog.Default()})
		if err != nil {
			return err
		}
		cluster = c
		adminURL = c.URL("postgres")
	}
	template = "auditlog_tpl_" + schema.Hash()[:16]
	return buildTemplate(ctx)
}

// buildTemplate migrates the template database unless another test process
// already has; processes take turns on an advisory lock in the maintenance
// database, so exactly one builds it.
func buildTemplate(ctx context.Context) error {
	admin, err := database.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLock); err != nil {
		return err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock($1)", templateLock)

	// Taken before the lock above is given back, so no other process finds
	// the template unused between its build and its first use.
	if user, err = holdTemplate(ctx, template); err != nil {
		return err
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", template).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	building := template + "_building"
	for _, sql := range []string{
		"DROP DATABASE IF EXISTS " + building + " WITH (FORCE)",
		"CREATE DATABASE " + building,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			return fmt.Errorf("template %s: %w", building, err)
		}
	}
	u, err := database.WithDatabase(adminURL, building)
	if err != nil {
		return err
	}
	conn, err := database.Connect(ctx, u)
	if err != nil {
		return err
	}
	_, err = schema.Migrate(ctx, conn, slog.New(slog.DiscardHandler))
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	// No one connects to a template: CREATE DATABASE refuses to copy one in use.
	for _, sql := range []string{
		"ALTER DATABASE " + building + " RENAME TO " + template,
		"ALTER DATABASE " + template + " WITH ALLOW_CONNECTIONS false",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			return fmt.Errorf("template %s: %w", template, err)
		}
	}
	return dropStaleTemplates(ctx, admin)
}

// holdTemplate opens a session that holds the in-use lock on a template.
func holdTemplate(ctx context.Context, name string) (*pgx.Conn, error) {
	conn, err := database.Connect(ctx, adminURL)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1, hashtext($2))", templateInUse, name); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("hold template %s: %w", name, err)
	}
	return conn, nil
}

// dropStaleTemplates removes the templates, and the ones left half built,
// that no test process uses (holds the in-use lock on), so that they do not
// pile up: another checkout's, of another schema, may be in use by its tests
// on the same server right now. Builds take turns on the lock we hold.
func dropStaleTemplates(ctx context.Context, admin *pgx.Conn) error {
	rows, err := admin.Query(ctx, `SELECT datname FROM pg_database
		WHERE datname LIKE 'auditlog\_tpl\_%' AND datname <> $1
		AND NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND classid::int = $2
			AND objid::int = hashtext(regexp_replace(datname, '_building$', '')) AND objsubid = 2)`, template, templateInUse)
	if err != nil {
		return err
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range stale {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop stale template %s: %w", name, err)
		}
	}
	return nil
}

func create(t testing.TB, from string) string {
	t.Helper()
	AdminURL(t)
	url, drop, err := createDatabase(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the test's database for inspection: psql %q", url)
			return
		}
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return url
}

// Create makes a migrated database outside of any test, for examples run
// from TestMain, and returns its URL and a function that drops it.
func Create(ctx context.Context) (string, func() error, error) {
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		return "", nil, setupErr
	}
	return createDatabase(ctx, template)
}

func createDatabase(ctx context.Context, from string) (string, func() error, error) {
	admin, err := database.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(ctx)
	name := "auditlog_test_" + randomHex(8)
	sql := "CREATE DATABASE " + name
	if from != "" {
		sql += " TEMPLATE " + from
	}
	if _, err := admin.Exec(ctx, sql); err != nil {
		return "", nil, fmt.Errorf("%s: %w", sql, err)
	}
	u, err := database.WithDatabase(adminURL, name)
	if err != nil {
		return "", nil, err
	}
	drop := func() error {
		c, err := database.Connect(context.Background(), adminURL)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		return database.DropDatabase(context.Background(), c, name)
	}
	return u, drop, nil
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := database.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func exec(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
