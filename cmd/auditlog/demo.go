package main

import (
	"context"
	"fmt"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/importer"
)

func runDemo(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "demo", "[--database-url URL] [--seed N]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "migrated database, as the role that migrated it (env DATABASE_URL)")
	seed := fs.Uint64("seed", 1, "seed of the generated history")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := database.Connect(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := demo.Run(ctx, conn, demo.Config{
		Logger: e.logger, Seed: *seed, Progress: importer.NewProgressPrinter(e.stderr, isTerminal(e.stderr)),
	})
	if err != nil {
		return err
	}
	if res.Created {
		fmt.Fprintf(e.stdout, "demo made: %d events recorded live, %d imported as history\n", res.Recorded, res.Imported.Loaded)
	} else {
		fmt.Fprintln(e.stdout, "demo already there: nothing done")
	}
	for _, o := range res.Orgs {
		fmt.Fprintf(e.stdout, "  %s  %-20s %s\n", o.ID, o.Name, o.Plan)
	}
	return nil
}
