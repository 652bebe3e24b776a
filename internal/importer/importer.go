// Package importer loads audit events in bulk from NDJSON or from the CSV the
// API exports, for backfilling history from another system. It connects as
// a member of audit_maintainer, which may not write the tier tables: each
// batch is COPYed into the session's staging table and moved by
// audit.import_batch (sql/import.sql), which checks every row as
// audit.log_event would and loads the whole batch or none of it.
//
// See docs/import.md for the formats, the checks and the report.
package importer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBatchSize is how many rows a batch holds unless told otherwise: large
// enough that a batch's fixed costs vanish, small enough that one bad row
// holds back few good ones.
const DefaultBatchSize = 10_000

// MaxBatchSize bounds BatchSize: one batch is one transaction and one
// staging table, so a larger one only holds more back.
const MaxBatchSize = 1_000_000

// ErrBatchSize is returned for a BatchSize below zero or over MaxBatchSize.
var ErrBatchSize = fmt.Errorf("the batch size must be between 1 and %d rows (0 for the default, %d)", MaxBatchSize, DefaultBatchSize)

// DB opens transactions: *pgx.Conn, *pgxpool.Pool and pgx.Tx (whose
// transactions are savepoints) all do.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options configure Import.
type Options struct {
	// Format of the input; default FormatAuto.
	Format Format
	// BatchSize is the number of rows loaded, or refused, together, at most
	// MaxBatchSize; default DefaultBatchSize.
	BatchSize int
	// Size is the input's length in bytes if known, so progress can say how
	// far along it is; 0 if not.
	Size int64
	// Progress, if set, is called after every batch and once more at the end.
	Progress func(Progress)
	// Logger receives a line per refused batch; default discard.
	Logger *slog.Logger
	// Now is the clock, for elapsed times and rates; default time.Now.
	Now func() time.Time
}

// Problem is a row that was not loaded, and why.
type Problem struct {
	// Line is where the row starts in the input (the header is line 1 of a CSV file).
	Line int64
	// Code is a SQLSTATE: AL0xx for the rules of the audit log
	// (docs/recording.md, docs/import.md), 22P02 for a value of the wrong
	// type, 22P04 for a malformed CSV record. Empty for skipped rows.
	Code string
	// Reason says what is wrong, naming the column and the value.
	Reason string
}

// Error is the problem as the report prints it: line, SQLSTATE, reason.
func (p *Problem) Error() string {
	if p.Code == "" {
		return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
	}
	return fmt.Sprintf("line %d: %s %s", p.Line, p.Code, p.Reason)
}

// maxSkipExamples bounds Report.Skips: a backfill of years into a free org
// skips most of its rows, and a few lines show why.
const maxSkipExamples = 10

// Report is what an import did.
type Report struct {
	// Rows is the number of rows read.
	Rows int64
	// Loaded rows are stored.
	Loaded int64
	// Expired rows were skipped: older than their org's plan retains, they
	// would never be shown.
	Expired int64
	// Duplicates were skipped: the same event (id, org_id, occurred_at) is
	// already stored, in any tier table, say by an earlier run of the same
	// import. A row without an id has the one its values make, so it too is
	// found again (docs/import.md, Ids).
	Duplicates int64
	// Refused rows belong to batches that held an invalid row, and were not
	// loaded.
	Refused int64
	// Batches is the number of batches, RefusedBatches those not loaded.
	Batches, RefusedBatches int
	// Problems are the invalid rows, every one, in line order.
	Problems []Problem
	// Skips are the first skipped rows (expired or duplicate), as examples.
	Skips []Problem
	// Elapsed is how long the import took.
	Elapsed time.Duration
}

// ErrNotMaintainer is returned when the connecting role is not a member of
// audit_maintainer.
var ErrNotMaintainer = errors.New("the bulk import needs a role that is a member of audit_maintainer")

// The statements of a batch (sql/import.sql).
const (
	checkRoleSQL = "SELECT current_user, pg_has_role('audit_maintainer', 'MEMBER')"
	beginSQL     = "SELECT audit.import_begin()"
	batchSQL     = "SELECT line, outcome, code, reason FROM audit.import_batch()"
)

// staging is the session's staging table that a batch COPYs into.
var staging = pgx.Identifier{"pg_temp", "import_rows"}

// Import reads events from r and loads them in batches, each in a
// transaction of its own, all of its rows or none. It reads to the end even
// when a batch is refused, so that the report names every invalid row. The
// error is for what stops the import (the input cannot be read, the
// database fails); refused rows are in the report.
func Import(ctx context.Context, db DB, r io.Reader, o Options) (Report, error) {
	if o.BatchSize < 0 || o.BatchSize > MaxBatchSize {
		return Report{}, fmt.Errorf("import: %d: %w", o.BatchSize, ErrBatchSize)
	}
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkRole(ctx, db); err != nil {
		return Report{}, err
	}
	counted := &countingReader{r: r}
	src, err := newSource(counted, o.Format)
	if err != nil {
		return Report{}, fmt.Errorf("import: %w", err)
	}
	im := &importer{db: db, src: src, o: o, start: o.Now(), read: counted}
	for !im.eof {
		if err := im.batch(ctx); err != nil {
			return im.report, err
		}
		im.progress(false)
	}
	im.report.Elapsed = o.Now().Sub(im.start)
	im.progress(true)
	slices.SortFunc(im.report.Problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
	return im.report, nil
}

// checkRole refuses early, with a clear message, a role the database would
// refuse at the first batch.
func checkRole(ctx context.Context, db DB) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback(ctx)
	var role string
	var ok bool
	if err := tx.QueryRow(ctx, checkRoleSQL).Scan(&role, &ok); err != nil {
		return fmt.Errorf("import: check role: %w", err)
	}
	if !ok {
		return fmt.Errorf("import: role %q: %w", role, ErrNotMaintainer)
	}
	return nil
}

// importer is one run of Import.
type importer struct {
	db     DB
	src    source
	o      Options
	start  time.Time
	read   *countingReader
	eof    bool
	report Report
}

// batch loads the next BatchSize rows in one transaction, or refuses them.
func (im *importer) batch(ctx context.Context) error {
	tx, err := im.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("import: begin batch: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, beginSQL); err != nil {
		return fmt.Errorf("import: make staging table: %w", err)
	}
	rows := &batchRows{src: im.src, max: int64(im.o.BatchSize)}
	if _, err := tx.CopyFrom(ctx, staging, stagingColumns, rows); err != nil {
		return fmt.Errorf("import: copy rows ending line %d: %w", rows.lastLine, err)
	}
	im.eof = rows.eof
	if rows.read == 0 {
		return nil
	}
	outcomes, err := tx.Query(ctx, batchSQL)
	if err != nil {
		return fmt.Errorf("import: load batch: %w", err)
	}
	outs, err := pgx.CollectRows(outcomes, pgx.RowToStructByName[outcome])
	if err != nil {
		return fmt.Errorf("import: load batch of lines %d-%d: %w", rows.firstLine, rows.lastLine, err)
	}
	invalid := rows.problems
	var skips []Problem
	var expired, duplicates int64
	for _, out := range outs {
		p := Problem{Line: out.Line, Reason: out.Reason}
		if out.Code != nil {
			p.Code = *out.Code
		}
		switch out.Outcome {
		case "invalid":
			invalid = append(invalid, p)
		case "expired":
			expired++
			skips = append(skips, p)
		case "duplicate":
			duplicates++
			skips = append(skips, p)
		}
	}

	rep := &im.report
	rep.Rows += rows.read
	rep.Batches++
	if len(invalid) > 0 {
		rep.Refused += rows.read
		rep.RefusedBatches++
		rep.Problems = append(rep.Problems, invalid...)
		im.o.Logger.Warn("import: batch refused, nothing of it loaded", "lines", fmt.Sprintf("%d-%d", rows.firstLine, rows.lastLine),
			"rows", rows.read, "invalid", len(invalid))
		return nil // rolled back
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("import: commit batch of lines %d-%d: %w", rows.firstLine, rows.lastLine, err)
	}
	rep.Loaded += rows.read - expired - duplicates
	rep.Expired += expired
	rep.Duplicates += duplicates
	rep.Skips = append(rep.Skips, skips[:min(len(skips), maxSkipExamples-len(rep.Skips))]...)
	return nil
}

// outcome is a row audit.import_batch did not load.
type outcome struct {
	Line    int64
	Outcome string // invalid, expired or duplicate
	Code    *string
	Reason  string
}

// batchRows feeds COPY the next rows of the source, up to max, keeping aside
// the ones that cannot be sent (a value of the wrong type, a malformed
// record) as problems.
type batchRows struct {
	src                 source
	max                 int64
	read                int64 // rows read, sent or not
	firstLine, lastLine int64
	problems            []Problem
	eof                 bool
	row                 []any
	err                 error
}

// Next reads the next row that can be sent.
func (b *batchRows) Next() bool {
	for b.read < b.max {
		rec, err := b.src.next()
		if errors.Is(err, io.EOF) {
			b.eof = true
			return false
		}
		var p *Problem
		if err != nil && !errors.As(err, &p) {
			b.err = err
			return false
		}
		b.read++
		if p == nil {
			var row []any
			if row, p = rec.values(); p == nil {
				b.seen(rec.line)
				b.row = row
				return true
			}
		}
		b.seen(p.Line)
		b.problems = append(b.problems, *p)
	}
	return false
}

func (b *batchRows) seen(line int64) {
	if b.firstLine == 0 {
		b.firstLine = line
	}
	b.lastLine = line
}

// Values is the row Next read.
func (b *batchRows) Values() ([]any, error) { return b.row, nil }

// Err is what stopped the reading, if not the end of the input.
func (b *batchRows) Err() error { return b.err }

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

// Read reads from the underlying reader and counts what it read.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progress reports how far the import is.
func (im *importer) progress(done bool) {
	if im.o.Progress == nil {
		return
	}
	rep := im.report
	elapsed := rep.Elapsed
	if !done {
		elapsed = im.o.Now().Sub(im.start)
	}
	im.o.Progress(Progress{
		Rows: rep.Rows, Loaded: rep.Loaded, Skipped: rep.Expired + rep.Duplicates, Refused: rep.Refused,
		Bytes: im.read.n.Load(), Size: im.o.Size, Elapsed: elapsed, Done: done,
	})
}
