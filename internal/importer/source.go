package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/internal/sqlstate"
)

// Format is the format of an import file.
type Format string

// The formats Import reads.
const (
	// FormatAuto picks NDJSON when the first non-blank character is '{',
	// CSV otherwise.
	FormatAuto Format = ""
	// FormatCSV is RFC 4180 CSV with a header row naming the columns, as the
	// API exports it.
	FormatCSV Format = "csv"
	// FormatNDJSON is one JSON object per line, keyed by column name, as the
	// API's JSON pages hold events.
	FormatNDJSON Format = "ndjson"
)

// ParseFormat turns a flag value (auto, csv, ndjson) into a Format.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FormatAuto, nil
	case "csv":
		return FormatCSV, nil
	case "ndjson", "jsonl":
		return FormatNDJSON, nil
	}
	return "", fmt.Errorf("unknown format %q: want auto, csv or ndjson", s)
}

// Columns are the event columns an import file may hold, named as in
// audit.events and the API's CSV export.
var Columns = []string{"id", "org_id", "occurred_at", "action", "target_type", "target_id", "actor_type",
	"actor_id", "actor_email", "ip", "user_agent", "request_id", "metadata"}

// derivedColumns are the columns of the API's exports that are not the
// event's: its sentence, which the catalog writes, and its seal (seq, hash,
// prev_hash). An import skips them, as the database it loads into writes
// them anew (it seals the events in the order they commit).
var derivedColumns = []string{"sentence", "seq", "hash", "prev_hash"}

// The index of each column in Columns and in a record.
const (
	colID = iota
	colOrgID
	colOccurredAt
	colAction
	colTargetType
	colTargetID
	colActorType
	colActorID
	colActorEmail
	colIP
	colUserAgent
	colRequestID
	colMetadata
	numColumns
)

// stagingColumns are the columns of pg_temp.import_rows that a batch COPYs.
var stagingColumns = append([]string{"line"}, Columns...)

// record is one event as read from the file: every column as text, "" for
// none, and the line it starts on.
type record struct {
	line   int64
	fields [numColumns]string
}

// source reads records from a file, one at a time.
type source interface {
	// next returns the next record; a malformed one comes back as a
	// *Problem with its line, and the end of the input as io.EOF.
	next() (record, error)
}

// maxLine bounds an NDJSON line: metadata is at most 16 KiB, so a line far
// longer is not an event.
const maxLine = 1 << 20

// newSource starts reading r in format f, detecting it if f is FormatAuto.
func newSource(r io.Reader, f Format) (source, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if f == FormatAuto {
		f = detect(br)
	}
	switch f {
	case FormatNDJSON:
		return &ndjsonSource{r: br}, nil
	case FormatCSV:
		return newCSVSource(br)
	}
	return nil, fmt.Errorf("unknown format %q", f)
}

// detect peeks at the first non-blank character of the input.
func detect(br *bufio.Reader) Format {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) < n || err != nil {
			return FormatCSV
		}
		switch b[n-1] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return FormatNDJSON
		}
		return FormatCSV
	}
}

// csvSource reads the API's CSV export: a header row naming the columns, in
// any order, then one event per record.
type csvSource struct {
	r     *csv.Reader
	index []int // column of each field; -1: a derived one, skipped
}

func newCSVSource(r io.Reader) (*csvSource, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty CSV file: want a header row naming the columns")
	}
	if err != nil {
		return nil, fmt.Errorf("read the CSV header: %w", err)
	}
	s := &csvSource{r: cr}
	seen := map[int]bool{}
	for _, name := range header {
		name = strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))
		i := columnIndex(name)
		if i < 0 && slices.Contains(derivedColumns, name) {
			s.index = append(s.index, -1)
			continue
		}
		if i < 0 {
			return nil, fmt.Errorf("CSV header: unknown column %q (the columns are %s)", name, strings.Join(Columns, ", "))
		}
		if seen[i] {
			return nil, fmt.Errorf("CSV header: column %q twice", name)
		}
		seen[i] = true
		s.index = append(s.index, i)
	}
	for _, required := range []int{colOrgID, colOccurredAt, colAction} {
		if !seen[required] {
			return nil, fmt.Errorf("CSV header: no %s column", Columns[required])
		}
	}
	return s, nil
}

func columnIndex(name string) int {
	for i, c := range Columns {
		if c == name {
			return i
		}
	}
	return -1
}

func (s *csvSource) next() (record, error) {
	fields, err := s.r.Read()
	var perr *csv.ParseError
	if errors.As(err, &perr) {
		return record{}, &Problem{Line: int64(perr.StartLine), Code: sqlstate.BadCopyFileFormat, Reason: "malformed CSV: " + perr.Err.Error()}
	}
	if err != nil {
		return record{}, err
	}
	line, _ := s.r.FieldPos(0)
	rec := record{line: int64(line)}
	for i, f := range fields {
		if s.index[i] >= 0 {
			rec.fields[s.index[i]] = unneutralise(f)
		}
	}
	return rec, nil
}

// unneutralise undoes what the CSV export does to a cell a spreadsheet would
// run as a formula: a ' put before a leading = + - @ tab or CR.
func unneutralise(cell string) string {
	if len(cell) >= 2 && cell[0] == '\'' && strings.IndexByte("=+-@\t\r", cell[1]) >= 0 {
		return cell[1:]
	}
	return cell
}

// ndjsonSource reads one JSON object per line; blank lines are skipped.
type ndjsonSource struct {
	r    *bufio.Reader
	buf  []byte
	line int64
}

// readLine reads the next line into s.buf, without its newline. A line
// longer than maxLine is read to its end but not kept, and comes back as a
// Problem, so that one such line does not end the import.
func (s *ndjsonSource) readLine() error {
	s.buf = s.buf[:0]
	s.line++
	tooLong := false
	for {
		chunk, err := s.r.ReadSlice('\n')
		if !tooLong {
			if len(s.buf)+len(chunk) > maxLine+1 { // +1: the newline
				tooLong, s.buf = true, s.buf[:0]
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(chunk) > 0 || tooLong):
			err = nil // a last line without a newline
		case err != nil:
			return err
		}
		if tooLong {
			return &Problem{Line: s.line, Code: sqlstate.InvalidTextRepresentation, Reason: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		s.buf = bytes.TrimSuffix(s.buf, []byte("\n"))
		return nil
	}
}

// jsonEvent is an NDJSON line: every column a string or null, metadata any
// JSON value; the derived keys are skipped (derivedColumns), and so is the
// manifest line that ends the API's NDJSON export.
type jsonEvent struct {
	Sentence json.RawMessage `json:"sentence"`
	Seq      json.RawMessage `json:"seq"`
	Hash     json.RawMessage `json:"hash"`
	PrevHash json.RawMessage `json:"prev_hash"`
	Manifest json.RawMessage `json:"manifest"`

	ID         *string         `json:"id"`
	OrgID      *string         `json:"org_id"`
	OccurredAt *string         `json:"occurred_at"`
	Action     *string         `json:"action"`
	TargetType *string         `json:"target_type"`
	TargetID   *string         `json:"target_id"`
	ActorType  *string         `json:"actor_type"`
	ActorID    *string         `json:"actor_id"`
	ActorEmail *string         `json:"actor_email"`
	IP         *string         `json:"ip"`
	UserAgent  *string         `json:"user_agent"`
	RequestID  *string         `json:"request_id"`
	Metadata   json.RawMessage `json:"metadata"`
}

func (s *ndjsonSource) next() (record, error) {
	for {
		if err := s.readLine(); err != nil {
			return record{}, err
		}
		b := bytes.TrimSpace(s.buf)
		if len(b) == 0 {
			continue
		}
		var e jsonEvent
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return record{}, &Problem{Line: s.line, Code: sqlstate.InvalidTextRepresentation, Reason: "not a JSON object of event columns: " + err.Error()}
		}
		if dec.More() {
			return record{}, &Problem{Line: s.line, Code: sqlstate.InvalidTextRepresentation, Reason: "more than one JSON value on the line"}
		}
		if e.Manifest != nil && e.OrgID == nil {
			continue
		}
		rec := record{line: s.line}
		for i, v := range []*string{e.ID, e.OrgID, e.OccurredAt, e.Action, e.TargetType, e.TargetID, e.ActorType,
			e.ActorID, e.ActorEmail, e.IP, e.UserAgent, e.RequestID} {
			if v != nil {
				rec.fields[i] = *v
			}
		}
		if m := bytes.TrimSpace(e.Metadata); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
			rec.fields[colMetadata] = string(m)
		}
		return rec, nil
	}
}

// timeLayouts are the forms occurred_at may take: RFC 3339 (the API's), and
// PostgreSQL's own output (a space for the T, an offset of hours).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z07",
}

// values turns a record into the row COPYed into pg_temp.import_rows, in
// stagingColumns order. A value of the wrong type makes a Problem; the rules
// on the values themselves are checked by the database.
func (rec *record) values() ([]any, *Problem) {
	row := make([]any, 0, len(stagingColumns))
	row = append(row, rec.line)
	for i, f := range rec.fields {
		v, err := parseField(i, f)
		if err != nil {
			return nil, &Problem{Line: rec.line, Code: sqlstate.InvalidTextRepresentation, Reason: fmt.Sprintf("%s: %v", Columns[i], err)}
		}
		row = append(row, v)
	}
	return row, nil
}

// parseField turns the text of column i into the value COPY sends; "" is NULL.
func parseField(i int, f string) (any, error) {
	if f == "" {
		return nil, nil
	}
	switch i {
	case colID, colOrgID, colActorID:
		var u pgtype.UUID
		if err := u.Scan(f); err != nil {
			return nil, fmt.Errorf("not a UUID: %s", quote(f))
		}
		return u, nil
	case colOccurredAt:
		for _, layout := range timeLayouts {
			if t, err := time.Parse(layout, f); err == nil {
				return t, nil
			}
		}
		return nil, fmt.Errorf("not a time with a zone, like 2026-11-25T19:56:00Z: %s", quote(f))
	case colIP:
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("not an IP address: %s", quote(f))
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	case colMetadata:
		if !utf8.ValidString(f) {
			return nil, fmt.Errorf("not UTF-8: %s", quote(f))
		}
		if !json.Valid([]byte(f)) {
			return nil, fmt.Errorf("not JSON: %s", quote(f))
		}
		if hasNUL(f) {
			return nil, fmt.Errorf("holds \\u0000, which jsonb cannot store: %s", quote(f))
		}
		return []byte(f), nil
	}
	if !utf8.ValidString(f) {
		return nil, fmt.Errorf("not UTF-8: %s", quote(f))
	}
	if strings.IndexByte(f, 0) >= 0 {
		return nil, fmt.Errorf("holds a NUL character, which text cannot store: %s", quote(f))
	}
	return f, nil
}

// hasNUL reports whether a valid JSON text holds a string or key with a NUL
// (written \u0000), which PostgreSQL's jsonb refuses. The escape's text is
// looked for first, so most rows are not decoded twice.
func hasNUL(doc string) bool {
	if !strings.Contains(doc, `\u0000`) {
		return false
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}

// quote shows a bad value in a message, cut to a readable length.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}
