package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/pglocal"
)

// devDatabase is the database `auditlog dev` uses in the local cluster.
const devDatabase = "auditlog"

func runDev(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "dev", "[--addr HOST:PORT]")
	addr := fs.String("addr", envOr("AUDITLOG_ADDR", "127.0.0.1:8080"), "address to serve on (env AUDITLOG_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cluster, err := pglocal.Start(ctx, pglocal.Options{Logger: e.logger})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.Close(stopCtx); err != nil {
			e.logger.Error("stopping local PostgreSQL", "err", err)
		}
	}()
	if err := createDatabase(ctx, cluster.URL("postgres"), devDatabase); err != nil {
		return err
	}
	dbURL := cluster.URL(devDatabase)
	if err := migrate(ctx, e, dbURL); err != nil {
		return err
	}
	return serve(ctx, e, serveConfig{addr: *addr, dbURL: dbURL, ready: func(a net.Addr) {
		fmt.Fprintf(e.stdout, "\nauditlog is running.\n\n")
		fmt.Fprintf(e.stdout, "  API:       http://%s/healthz\n", a)
		fmt.Fprintf(e.stdout, "  Database:  psql -h %s -U %s %s\n", cluster.Dir(), pglocal.Superuser, devDatabase)
		fmt.Fprintf(e.stdout, "\nPress Ctrl-C to stop (the local PostgreSQL stops too, its data is kept in %s).\n\n", cluster.Dir())
	}})
}

// createDatabase creates database name unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := database.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
