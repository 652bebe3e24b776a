package importer

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Progress is how far an import is, given to Options.Progress after every
// batch and once at the end.
type Progress struct {
	// Rows read so far, and what became of them.
	Rows, Loaded, Skipped, Refused int64
	// Bytes of input read so far, and the input's Size if known (else 0).
	Bytes, Size int64
	// Elapsed since the import started.
	Elapsed time.Duration
	// Done is set on the last call, when the import has finished.
	Done bool
}

// RowsPerSecond is the average rate so far.
func (p Progress) RowsPerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Rows) / p.Elapsed.Seconds()
}

// PlainEvery is how often a progress printer that is not on a terminal
// writes a line: often enough to show life in a CI log, rarely enough not to
// flood it.
const PlainEvery = 2 * time.Second

// barWidth is the number of cells of the progress bar.
const barWidth = 24

// NewProgressPrinter returns an Options.Progress that writes to w. On a
// terminal (tty) it redraws one line in place: a bar when the input's size is
// known, the rows and the rate; otherwise it writes a plain line every
// PlainEvery and a last one at the end, for logs.
func NewProgressPrinter(w io.Writer, tty bool) func(Progress) {
	var printedAt time.Duration
	printed := false
	return func(p Progress) {
		if tty {
			fmt.Fprintf(w, "\r\x1b[K%s", barLine(p))
			if p.Done {
				fmt.Fprintln(w)
			}
			return
		}
		if !p.Done && printed && p.Elapsed-printedAt < PlainEvery {
			return
		}
		printed, printedAt = true, p.Elapsed
		fmt.Fprintln(w, plainLine(p))
	}
}

// barLine is the terminal form: [██████░░░░]  42%  120,000 rows  48,211 rows/s.
func barLine(p Progress) string {
	var b strings.Builder
	b.WriteString("import")
	if f, ok := p.fraction(); ok {
		full := int(f * barWidth)
		fmt.Fprintf(&b, " [%s%s] %3.0f%%", strings.Repeat("█", full), strings.Repeat("░", barWidth-full), f*100)
	}
	fmt.Fprintf(&b, "  %s rows  %s rows/s", thousands(p.Rows), thousands(int64(p.RowsPerSecond())))
	if p.Refused > 0 {
		fmt.Fprintf(&b, "  %s refused", thousands(p.Refused))
	}
	if p.Done {
		fmt.Fprintf(&b, "  done in %s", p.Elapsed.Round(10*time.Millisecond))
	}
	return b.String()
}

// plainLine is the log form.
func plainLine(p Progress) string {
	var b strings.Builder
	if p.Done {
		b.WriteString("import: done: ")
	} else {
		b.WriteString("import: ")
	}
	fmt.Fprintf(&b, "%d rows read", p.Rows)
	if f, ok := p.fraction(); ok && !p.Done {
		fmt.Fprintf(&b, " (%.0f%%)", f*100)
	}
	fmt.Fprintf(&b, ", %.0f rows/s; %d loaded, %d skipped, %d refused; %s",
		p.RowsPerSecond(), p.Loaded, p.Skipped, p.Refused, p.Elapsed.Round(10*time.Millisecond))
	return b.String()
}

// fraction is how much of the input has been read, when its size is known.
func (p Progress) fraction() (float64, bool) {
	if p.Size <= 0 {
		return 0, false
	}
	if p.Done {
		return 1, true
	}
	return min(1, float64(p.Bytes)/float64(p.Size)), true
}

// thousands writes n with a comma every three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	start := len(s) % 3
	if n < 0 || start == 0 && len(s) <= 3 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:start])
	for i := start; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
