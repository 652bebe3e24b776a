// Package schema brings a database to the audit log's schema: it applies the
// embedded tern migrations (../../migrations) and then reinstalls the code
// package (../../sql).
package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/tern/v2/migrate"

	"github.com/auditlog/auditlog/internal/sqlstate"
	"github.com/auditlog/auditlog/migrations"
	sqlcode "github.com/auditlog/auditlog/sql"
)

// VersionTable is where tern records the number of applied migrations.
const VersionTable = "public.auditlog_schema_version"

// Result says what Migrate did.
type Result struct {
	// From and To are the schema versions before and after.
	From, To int32
	// Applied names the migrations applied, in order.
	Applied []string
}

// Migrate applies the pending migrations, then reinstalls the code package.
// It is idempotent, and concurrent calls on one database take turns on
// tern's advisory lock, so all of them succeed.
func Migrate(ctx context.Context, conn *pgx.Conn, logger *slog.Logger) (Result, error) {
	var res Result
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return res, fmt.Errorf("prepare %s: %w", VersionTable, err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return res, fmt.Errorf("load migrations: %w", err)
	}
	m.OnStart = func(seq int32, name, _, _ string) {
		logger.Info("applying migration", "version", seq, "name", name)
		res.Applied = append(res.Applied, name)
	}
	if res.From, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if res.To, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}

	code, err := migrate.LoadCodePackage(sqlcode.FS)
	if err != nil {
		return res, fmt.Errorf("load code package: %w", err)
	}
	if err := installCode(ctx, conn, code, logger); err != nil {
		return res, fmt.Errorf("install code package: %w", describeCodeError(code, err))
	}
	logger.Info("installed code package", "schema_version", res.To)
	return res, nil
}

// The code package's install waits at most codeLockTimeout for each lock,
// and is retried codeInstallAttempts times. It takes few strong locks (it
// makes triggers only where missing), but replacing a view waits for the
// view's readers, and whoever comes after would queue behind the install:
// better to step back and try again.
const (
	codeLockTimeout     = 2 * time.Second
	codeInstallAttempts = 8
)

func installCode(ctx context.Context, conn *pgx.Conn, code *migrate.CodePackage, logger *slog.Logger) error {
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", codeLockTimeout.Milliseconds())); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET lock_timeout")
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := migrate.InstallCodePackage(ctx, conn, sqlcode.Data(), code)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != sqlstate.LockNotAvailable || attempt == codeInstallAttempts {
			return err
		}
		logger.Warn("the code package waited too long for a lock; trying again", "attempt", attempt, "in", backoff, "err", pgErr.Message)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// describeCodeError points a failed statement of the code package at its line
// in the assembled install.sql, since the error position counts from there.
func describeCodeError(code *migrate.CodePackage, err error) error {
	var pgErr migrate.MigrationPgError
	if !errors.As(err, &pgErr) || pgErr.Position == 0 {
		return err
	}
	src, evalErr := code.Eval(sqlcode.Data())
	if evalErr != nil {
		return err
	}
	line, lineErr := migrate.ExtractErrorLine(src, int(pgErr.Position))
	if lineErr != nil {
		return err
	}
	return fmt.Errorf("%w (line %d of the assembled install.sql: %q)", err, line.LineNum, line.Text)
}

// Hash is a digest of the migrations and the code package (its files and
// tiers): equal hashes mean
// equal schemas, so a migrated template database can be reused by name.
func Hash() string {
	h := sha256.New()
	for _, fsys := range []fs.FS{migrations.FS, sqlcode.FS} {
		_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
			h.Write(b)
			return nil
		})
	}
	fmt.Fprintf(h, "%q", sqlcode.Tiers)
	return hex.EncodeToString(h.Sum(nil))
}
