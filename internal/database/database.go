// Package database opens connections and pools with the settings the
// commands share and with errors that say which server could not be reached.
package database

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConnectTimeout bounds each connection attempt unless the URL sets
// connect_timeout: a server that does not answer is an error, not a hang.
const ConnectTimeout = 10 * time.Second

// ErrNoURL is returned when no database URL was given.
var ErrNoURL = errors.New("no database URL: pass --database-url or set DATABASE_URL")

// Connect opens a single connection.
func Connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := parse(url)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(cfg.Host, cfg.Port, cfg.Database, err)
	}
	return conn, nil
}

// Pool opens a pool and checks that the server answers. configure, if not
// nil, adjusts the pool settings first.
func Pool(ctx context.Context, url string, configure func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, ErrNoURL
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		c := cfg.ConnConfig
		return nil, connectError(c.Host, c.Port, c.Database, err)
	}
	return pool, nil
}

func parse(url string) (*pgx.ConnConfig, error) {
	if url == "" {
		return nil, ErrNoURL
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = ConnectTimeout
	}
	return cfg, nil
}

func connectError(host string, port uint16, db string, err error) error {
	return fmt.Errorf("cannot connect to PostgreSQL at %s (database %q): %w",
		net.JoinHostPort(host, strconv.Itoa(int(port))), db, err)
}

// WithDatabase returns the postgres:// URL rawURL pointing at database name
// instead.
func WithDatabase(rawURL, name string) (string, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("want a postgres:// URL, got %q", redact(rawURL))
	}
	u.Path = "/" + name
	return u.String(), nil
}

// WithUser returns the postgres:// URL rawURL connecting as role user
// instead, with password (empty: none, as the local cluster's socket trusts
// its connections).
func WithUser(rawURL, user, password string) (string, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("want a postgres:// URL, got %q", redact(rawURL))
	}
	u.User = neturl.User(user)
	if password != "" {
		u.User = neturl.UserPassword(user, password)
	}
	return u.String(), nil
}

// redact hides a password in a URL for error messages.
func redact(rawURL string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// DropDatabase drops database name if it exists, as a superuser on conn
// (connected to another database): its connections are ended, and so are
// its replication slots, which would keep it from being dropped.
func DropDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, `
		SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
	if err != nil {
		return fmt.Errorf("end the replication of database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name); err != nil {
		return fmt.Errorf("drop the replication slots of database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ErrStandby is wrapped by CheckPrimary's error: the server is a hot
// standby, which takes no writes.
var ErrStandby = errors.New("is a standby (pg_is_in_recovery()), which takes no writes")

// IsStandby reports whether conn's server is a hot standby, replaying a
// primary's WAL (pg_is_in_recovery()).
func IsStandby(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return false, fmt.Errorf("check whether %s is a standby: %w", Server(conn), err)
	}
	return standby, nil
}

// CheckPrimary returns an error wrapping ErrStandby, which names the server,
// when conn's server is a hot standby: worker (retention worker, sealer,
// delivery worker) writes, so it runs against the primary.
func CheckPrimary(ctx context.Context, conn *pgx.Conn, worker string) error {
	standby, err := IsStandby(ctx, conn)
	if err != nil {
		return fmt.Errorf("%s: %w", worker, err)
	}
	if standby {
		return fmt.Errorf("%s: the database at %s %w; run the %s against the primary", worker, Server(conn), ErrStandby, worker)
	}
	return nil
}

// Server names conn's server for messages: host:port (database "name").
func Server(conn *pgx.Conn) string {
	c := conn.Config()
	return fmt.Sprintf("%s (database %q)", net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), c.Database)
}
