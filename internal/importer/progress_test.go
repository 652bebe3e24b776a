package importer_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/importer"
)

// Not on a terminal: a plain line at most every PlainEvery, and always the
// last one, with the counts and the rate.
func TestProgressPrinterPlainLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	print := importer.NewProgressPrinter(&out, false)
	for _, p := range []importer.Progress{
		{Rows: 10_000, Loaded: 10_000, Bytes: 100, Size: 1000, Elapsed: 500 * time.Millisecond},
		{Rows: 20_000, Loaded: 20_000, Bytes: 200, Size: 1000, Elapsed: time.Second},
		{Rows: 50_000, Loaded: 40_000, Refused: 10_000, Bytes: 500, Size: 1000, Elapsed: 2500 * time.Millisecond},
		{Rows: 60_000, Loaded: 50_000, Refused: 10_000, Bytes: 600, Size: 1000, Elapsed: 3 * time.Second},
		{Rows: 80_000, Loaded: 69_000, Skipped: 1000, Refused: 10_000, Bytes: 1000, Size: 1000, Elapsed: 4 * time.Second, Done: true},
	} {
		print(p)
	}
	want := "import: 10000 rows read (10%), 20000 rows/s; 10000 loaded, 0 skipped, 0 refused; 500ms\n" +
		"import: 50000 rows read (50%), 20000 rows/s; 40000 loaded, 0 skipped, 10000 refused; 2.5s\n" +
		"import: done: 80000 rows read, 20000 rows/s; 69000 loaded, 1000 skipped, 10000 refused; 4s\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// On a terminal: one line redrawn in place, with a bar when the size is
// known, and a newline only at the end.
func TestProgressPrinterTerminalBar(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	print := importer.NewProgressPrinter(&out, true)
	print(importer.Progress{Rows: 12_345, Bytes: 500, Size: 1000, Elapsed: time.Second})
	first := out.String()
	if !strings.HasPrefix(first, "\r\x1b[K") || strings.Contains(first, "\n") ||
		!strings.Contains(first, "["+strings.Repeat("█", 12)+strings.Repeat("░", 12)+"]  50%") ||
		!strings.Contains(first, "12,345 rows  12,345 rows/s") {
		t.Fatalf("first redraw %q", first)
	}
	out.Reset()
	print(importer.Progress{Rows: 1_234_567, Loaded: 1_234_000, Refused: 567, Bytes: 1000, Size: 1000, Elapsed: 2 * time.Second, Done: true})
	last := out.String()
	if !strings.HasSuffix(last, "\n") || !strings.Contains(last, "100%") || !strings.Contains(last, "1,234,567 rows  617,283 rows/s  567 refused  done in 2s") {
		t.Fatalf("last redraw %q", last)
	}
	out.Reset()
	// Reading a pipe: no size, so no bar.
	importer.NewProgressPrinter(&out, true)(importer.Progress{Rows: 999, Elapsed: time.Second})
	if strings.Contains(out.String(), "░") || !strings.Contains(out.String(), "import  999 rows  999 rows/s") {
		t.Fatalf("redraw without a size %q", out.String())
	}
}

// Import reports progress after every batch and once at the end, on its
// injected clock.
func TestImportReportsProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var events []map[string]any
	start := time.Now()
	for i := range 25 {
		events = append(events, map[string]any{"org_id": b.team, "occurred_at": ts(start.Add(-time.Duration(i+1) * time.Minute)), "action": "auth.signout"})
	}
	input := ndjson(t, events...)
	clock := start
	var got []importer.Progress
	rep := run(t, b.maintainer, input, importer.Options{
		BatchSize: 10, Size: int64(len(input)),
		Now:      func() time.Time { clock = clock.Add(time.Second); return clock },
		Progress: func(p importer.Progress) { got = append(got, p) },
	})
	if len(got) != 4 {
		t.Fatalf("%d progress calls, want 3 batches and the end: %+v", len(got), got)
	}
	for i, rows := range []int64{10, 20, 25, 25} {
		if got[i].Rows != rows || got[i].Loaded != rows || got[i].Done != (i == 3) || got[i].Size != int64(len(input)) {
			t.Errorf("call %d: %+v", i, got[i])
		}
	}
	last := got[3]
	if last.Bytes != int64(len(input)) || last.Elapsed != rep.Elapsed || last.Elapsed <= got[2].Elapsed || last.RowsPerSecond() <= 0 {
		t.Errorf("last call %+v, report elapsed %v", last, rep.Elapsed)
	}
}
