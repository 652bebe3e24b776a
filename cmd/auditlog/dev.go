package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/devenv"
	"github.com/auditlog/auditlog/internal/importer"
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
	info, err := prepareDev(ctx, e, dbURL, cluster.Dir())
	if err != nil {
		return err
	}
	cfg := serveConfig{addr: *addr, dbURL: info.apiURL, ready: func(a net.Addr) {
		printDev(e.stdout, a.String(), cluster.Dir(), info)
	}}
	cfg.retention.dbURL = info.workerURL
	cfg.seal = sealFlags{dbURL: info.sealerURL, keyPath: filepath.Join(cluster.Dir(), devenv.SealKeyFile), createKey: true}
	return serve(ctx, e, cfg)
}

// devInfo is what `auditlog dev` prepared, to print once the server listens.
type devInfo struct {
	apiURL      string // the database as auditlog_api, for the API
	workerURL   string // the database as auditlog_worker, for the retention worker
	sealerURL   string // the database as auditlog_sealer, for the sealer
	demo        demo.Result
	token       string
	tokenMinted bool
}

// prepareDev makes, in the migrated database at dbURL, the login roles of the
// product's parts, the demo (the first time only) and an owner token of the
// demo's enterprise org, kept in dir between runs.
func prepareDev(ctx context.Context, e env, dbURL, dir string) (devInfo, error) {
	var info devInfo
	conn, err := database.Connect(ctx, dbURL)
	if err != nil {
		return info, err
	}
	defer conn.Close(ctx)
	if err := devenv.CreateLoginRoles(ctx, conn); err != nil {
		return info, err
	}
	if info.demo, err = demo.Run(ctx, conn, demo.Config{
		Logger: e.logger, Progress: importer.NewProgressPrinter(e.stderr, isTerminal(e.stderr)),
	}); err != nil {
		return info, err
	}
	info.token, info.tokenMinted, err = devenv.OwnerToken(ctx, conn, devenv.TokenOpts{Dir: dir, OrgID: demo.EnterpriseOrgID, Email: demo.OwnerEmail})
	if err != nil {
		return info, err
	}
	if info.apiURL, err = database.WithUser(dbURL, devenv.LoginRoles[0].Name, ""); err != nil {
		return info, err
	}
	if info.workerURL, err = database.WithUser(dbURL, devenv.Worker, ""); err != nil {
		return info, err
	}
	info.sealerURL, err = database.WithUser(dbURL, devenv.Sealer, "")
	return info, err
}

// printDev tells the user where everything is and how to stop it.
func printDev(w io.Writer, addr, dir string, info devInfo) {
	var org demo.Org
	for _, o := range info.demo.Orgs {
		if o.ID == demo.EnterpriseOrgID {
			org = o
		}
	}
	made := "made on an earlier run"
	if info.demo.Created {
		made = fmt.Sprintf("made just now: %d events recorded live, %d imported", info.demo.Recorded, info.demo.Imported.Loaded)
	}
	tokenNote := "from an earlier run"
	if info.tokenMinted {
		tokenNote = "minted just now"
	}
	roles := make([]string, len(devenv.LoginRoles))
	for i, r := range devenv.LoginRoles {
		roles[i] = fmt.Sprintf("%s (%s)", r.Name, strings.Join(r.Groups, ", "))
	}
	base := "http://" + addr
	fmt.Fprintf(w, "\nauditlog is running, with the demo control plane (%d orgs; %s).\n\n", len(info.demo.Orgs), made)
	fmt.Fprintf(w, "  Activity page: %s/orgs/%s/activity  (%s, %s plan)\n", base, org.ID, org.Name, org.Plan)
	fmt.Fprintf(w, "  API:           %s/api/orgs/%s/audit\n", base, org.ID)
	fmt.Fprintf(w, "  Owner token:   %s\n", info.token)
	fmt.Fprintf(w, "                 (%s, an owner; %s; stored in %s/%s)\n", demo.OwnerEmail, tokenNote, dir, devenv.TokenFile)
	fmt.Fprintf(w, "  Try:           curl -H 'Authorization: Bearer %s' '%s/api/orgs/%s/audit?limit=5'\n", info.token, base, org.ID)
	fmt.Fprintf(w, "  Database:      psql -h %s -U %s %s\n", dir, pglocal.Superuser, devDatabase)
	fmt.Fprintf(w, "                 login roles: %s\n", strings.Join(roles, ", "))
	fmt.Fprintf(w, "\nPress Ctrl-C to stop (the local PostgreSQL stops too; its data is kept in %s).\n\n", dir)
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
