// Command bench measures auditlog and prints a results table; `make bench`
// runs it. Every figure is compared with a baseline measured in the same run,
// as a ratio, because absolute times drift from machine to machine and from
// minute to minute.
//
// With no --database-url it starts a local PostgreSQL of its own (next to
// the test cluster, with durable commits: fsync and synchronous_commit on)
// and makes a fresh database per benchmark.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/pglocal"
	"github.com/auditlog/auditlog/internal/schema"
)

// durableSettings make the bench cluster commit the way production does.
var durableSettings = []string{
	"fsync=on", "synchronous_commit=on", "full_page_writes=on",
	"shared_buffers=2GB", "max_wal_size=8GB", "checkpoint_timeout=30min",
	"max_parallel_workers_per_gather=0",
}

// row is one line of the results table.
type row struct {
	benchmark string
	measured  string
	baseline  string
	ratio     float64 // measured / baseline; 0 when not a ratio
	goal      string
	met       *bool // nil when there is no goal
}

// benchmark is one entry of the suite; each lives in a file of its own.
type benchmark struct {
	name string
	run  func(ctx context.Context, b *bench) ([]row, error)
	// alone: run only when -run is given and matches (not in make bench).
	alone bool
}

var suite = []benchmark{
	{"log_event", benchLogEvent, false},
	{"seal", benchSeal, false},
	{"retention_retire", benchRetire, false},
	{"retention_stall", benchRetentionStall, false},
	{"partman", benchPartman, false},
	{"import", benchImport, false},
	{"api", benchAPI, false},
	{"large", benchLarge, true},
	{"delivery", benchDelivery, false},
}

// bench is what every benchmark gets.
type bench struct {
	adminURL string
	tcpURL   string // adminURL over TCP: the local cluster's loopback port, or --database-url as given
	logger   *slog.Logger
	duration time.Duration // per measured phase
	scale    float64       // multiplies data set sizes; 1 is the size
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("run", "", "run only the benchmarks whose name matches this regexp")
	dbURL := fs.String("database-url", os.Getenv("BENCH_DATABASE_URL"), "superuser URL of a server to use instead of a local one (env BENCH_DATABASE_URL)")
	duration := fs.Duration("duration", 10*time.Second, "length of each measured phase")
	scale := fs.Float64("scale", 1, "scale the data set sizes (0.1 for a quick look)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	match, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("--run: %w", err)
	}
	b := &bench{adminURL: *dbURL, logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), duration: *duration, scale: *scale}
	if b.adminURL == "" {
		dir, err := pglocal.DefaultDir()
		if err != nil {
			return err
		}
		cluster, tcpURL, err := startCluster(ctx, dir+"-bench", b.logger)
		if err != nil {
			return err
		}
		defer cluster.Close(context.Background())
		b.adminURL, b.tcpURL = cluster.URL("postgres"), tcpURL
	} else {
		b.tcpURL = b.adminURL
	}

	var rows []row
	for _, bm := range suite {
		if !match.MatchString(bm.name) || bm.alone && *only == "" {
			continue
		}
		b.logger.Info("running benchmark", "name", bm.name)
		start := time.Now()
		r, err := bm.run(ctx, b)
		if err != nil {
			return fmt.Errorf("%s: %w", bm.name, err)
		}
		b.logger.Info("benchmark done", "name", bm.name, "took", time.Since(start).Round(time.Second))
		rows = append(rows, r...)
	}
	printTable(out, rows, b)
	return nil
}

// startCluster starts the bench's own cluster with durable commits, listening
// on its unix socket and on a free loopback port, where only the superuser
// may connect, with a password made for this run (a trusted TCP port would
// let any local user in). It returns the cluster and a superuser URL over
// TCP, for the benchmarks that measure what an application sees.
func startCluster(ctx context.Context, dir string, logger *slog.Logger) (*pglocal.Cluster, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	port, err := benchPort(dir)
	if err != nil {
		return nil, "", err
	}
	hba := filepath.Join(dir, "bench_hba.conf")
	err = os.WriteFile(hba, []byte("local all all trust\nhost all postgres 127.0.0.1/32 scram-sha-256\n"), 0o644)
	if err != nil {
		return nil, "", err
	}
	settings := append(slices.Clip(durableSettings), "listen_addresses=127.0.0.1", "hba_file="+hba)
	cluster, err := pglocal.Start(ctx, pglocal.Options{Dir: dir, Logger: logger, Settings: settings, Port: port})
	if err != nil {
		return nil, "", err
	}
	password := rand.Text()
	conn, err := database.Connect(ctx, cluster.URL("postgres"))
	if err == nil {
		_, err = conn.Exec(ctx, "ALTER ROLE postgres PASSWORD '"+password+"'") // base32: nothing to quote
		conn.Close(ctx)
	}
	if err != nil {
		cluster.Close(context.Background())
		return nil, "", err
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pglocal.Superuser, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/postgres", RawQuery: "sslmode=disable"}
	return cluster, u.String(), nil
}

// benchPort is the cluster's port: picked free on its first start and kept
// in its directory, so that a server left running by an earlier bench (its
// socket is named after the port) is found again.
func benchPort(dir string) (int, error) {
	file := filepath.Join(dir, "bench_port")
	if b, err := os.ReadFile(file); err == nil {
		return strconv.Atoi(strings.TrimSpace(string(b)))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port, os.WriteFile(file, []byte(strconv.Itoa(port)), 0o644)
}

func printTable(out io.Writer, rows []row, b *bench) {
	host, _ := os.Hostname()
	fmt.Fprintf(out, "\nauditlog benchmarks — %s, %d CPUs, %s, %s, phases of %s\n\n",
		host, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format(time.RFC3339), b.duration)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tmeasured\tbaseline\tratio\tgoal\tresult")
	fmt.Fprintln(tw, "---------\t--------\t--------\t-----\t----\t------")
	for _, r := range rows {
		ratio, result := "-", "-"
		if r.ratio != 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		if r.met != nil {
			result = map[bool]string{true: "met", false: "MISSED"}[*r.met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.benchmark, r.measured, orDash(r.baseline), ratio, orDash(r.goal), result)
	}
	tw.Flush()
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// freshConn is freshDB with a connection to the database, to close.
func (b *bench) freshConn(ctx context.Context, name string) (string, *pgx.Conn, error) {
	url, err := b.freshDB(ctx, name)
	if err != nil {
		return "", nil, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", nil, err
	}
	return url, conn, nil
}

// freshDB drops and recreates database name, migrates it and returns its URL.
func (b *bench) freshDB(ctx context.Context, name string) (string, error) {
	admin, err := database.Connect(ctx, b.adminURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	if err := database.DropDatabase(ctx, admin, name); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	url, err := database.WithDatabase(b.adminURL, name)
	if err != nil {
		return "", err
	}
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := schema.Migrate(ctx, conn, slog.New(slog.DiscardHandler)); err != nil {
		return "", err
	}
	return url, nil
}
