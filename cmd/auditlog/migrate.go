package main

import (
	"context"
	"fmt"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/schema"
)

func runMigrate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "migrate", "[--database-url URL]")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database to migrate, as a role that may create roles and schemas (env DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return migrate(ctx, e, *dbURL)
}

// migrate brings the database at url to the current schema and says what it did.
func migrate(ctx context.Context, e env, url string) error {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := schema.Migrate(ctx, conn, e.quietLogger())
	if err != nil {
		return err
	}
	for _, name := range res.Applied {
		fmt.Fprintf(e.stdout, "applied migration %s\n", name)
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(e.stdout, "schema already at version %d\n", res.To)
	}
	fmt.Fprintf(e.stdout, "installed SQL code package (schema version %d)\n", res.To)
	return nil
}
