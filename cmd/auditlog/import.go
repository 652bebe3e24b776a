package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/importer"
)

func runImport(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "import", "[--database-url URL] [--format auto|csv|ndjson] [--batch-size N] FILE|-")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "database, as a role holding audit_maintainer (env DATABASE_URL)")
	format := fs.String("format", "auto", "input format: csv (the API's export), ndjson, or auto (by the first character)")
	batchSize := fs.Int("batch-size", importer.DefaultBatchSize, "rows per batch: each batch loads whole or not at all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("import: want one FILE (or - for standard input), got %d arguments", fs.NArg())
	}
	f, err := importer.ParseFormat(*format)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	in, size, err := openInput(fs.Arg(0))
	if err != nil {
		return err
	}
	defer in.Close()

	conn, err := database.Connect(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rep, err := importer.Import(ctx, conn, in, importer.Options{
		Format: f, BatchSize: *batchSize, Size: size, Logger: e.logger,
		Progress: importer.NewProgressPrinter(e.stderr, isTerminal(e.stderr)),
	})
	if err != nil {
		return err
	}
	return printImport(e.stdout, fs.Arg(0), rep)
}

// openInput opens the file to import, or standard input for "-", and says
// its size when it is a regular file.
func openInput(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), 0, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("import: %w", err)
	}
	var size int64
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, nil
}

// isTerminal says whether w is a terminal, where progress redraws one line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// printImport writes what the import did, every invalid row, and examples
// of skipped ones; an import that refused rows is an error.
func printImport(w io.Writer, name string, rep importer.Report) error {
	fmt.Fprintf(w, "%s: %d rows read in %d batches: %d loaded, %d skipped as older than their org's retention, "+
		"%d skipped as already stored, %d refused\n",
		name, rep.Rows, rep.Batches, rep.Loaded, rep.Expired, rep.Duplicates, rep.Refused)
	if len(rep.Skips) > 0 {
		fmt.Fprintln(w, "skipped, for example:")
		for _, s := range rep.Skips {
			fmt.Fprintf(w, "  %s\n", &s)
		}
	}
	if rep.RefusedBatches == 0 {
		return nil
	}
	fmt.Fprintf(w, "%d invalid rows; nothing of the %d batches holding them was loaded:\n", len(rep.Problems), rep.RefusedBatches)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s\n", &p)
	}
	return fmt.Errorf("import: %d rows refused: fix the lines above and import the file again (rows already stored are skipped)", rep.Refused)
}
