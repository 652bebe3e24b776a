package verify

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

// utf8BOM is the byte-order mark a CSV export starts with when asked (bom=1).
const utf8BOM = "\ufeff"

// csvColumns are the CSV export's columns, as its header names them.
var csvColumns = []string{"id", "org_id", "occurred_at", "action", "target_type", "target_id", "actor_type",
	"actor_id", "actor_email", "ip", "user_agent", "request_id", "metadata", "seq", "hash", "prev_hash"}

// ExportCSVFile verifies offline a CSV export (format=csv of the listing)
// with its manifest, the Audit-Manifest trailer it was served with
// (ParseManifest), as ExportFile does an NDJSON one. A cell a spreadsheet
// would run carries a leading ' in the export; one that began with ' before
// such a character already reads the same, so both readings are tried
// against the row's hash. A leading UTF-8 byte-order mark is skipped.
func ExportCSVFile(r io.Reader, manifest *store.Manifest, keys map[string]ed25519.PublicKey) (ExportResult, error) {
	var c exportChecker
	body := sha256.New()
	// The byte-order mark of bom=1 is not part of the body the manifest hashes.
	br := bufio.NewReader(r)
	if mark, err := br.Peek(len(utf8BOM)); err == nil && string(mark) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	cr := &csvReader{r: bufio.NewReaderSize(io.TeeReader(br, body), 64<<10)}
	header, _, err := cr.record()
	if err != nil {
		return c.res, fmt.Errorf("read the CSV header: %w", err)
	}
	index := map[string]int{}
	for i, h := range header {
		if _, ok := index[h.text]; ok {
			// This verifier would read the last, a spreadsheet shows the first.
			return c.res, fmt.Errorf("CSV header: the column %s twice", h.text)
		}
		index[h.text] = i
	}
	for _, col := range csvColumns {
		if _, ok := index[col]; !ok {
			return c.res, fmt.Errorf("CSV header: no %s column: not an export of the listing", col)
		}
	}
	for {
		cells, line, err := cr.record()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c.res, fmt.Errorf("read the export: %w", err)
		}
		if len(cells) != len(header) {
			c.fail(line, 0, "", "%d cells, the header has %d", len(cells), len(header))
			break
		}
		e, err := csvEvent(cells, index)
		if err != nil {
			c.fail(line, 0, cells[index["id"]].text, "%v", err)
			break
		}
		c.add(line, e)
		if c.res.Break != nil {
			break
		}
	}
	if c.res.Break != nil {
		return c.res, nil
	}
	return c.finish(manifest, 0, body.Sum(nil), keys)
}

// csvEvent reads a row's event and seal: an empty cell is null, a quoted
// empty one an empty text.
func csvEvent(cells []csvCell, index map[string]int) (store.ListedEvent, error) {
	get := func(col string) *string {
		c := cells[index[col]]
		if c.text == "" && !c.quoted {
			return nil
		}
		return &c.text
	}
	text := func(col string) string {
		if v := get(col); v != nil {
			return *v
		}
		return ""
	}
	var e store.ListedEvent
	e.ID, e.OrgID, e.Action, e.TargetType, e.ActorType = text("id"), text("org_id"), text("action"), text("target_type"), text("actor_type")
	e.TargetID, e.ActorID, e.ActorEmail, e.IP = get("target_id"), get("actor_id"), get("actor_email"), get("ip")
	e.UserAgent, e.RequestID, e.Metadata = get("user_agent"), get("request_id"), json.RawMessage(text("metadata"))
	if err := checkKeys(e.Metadata, nil); err != nil {
		return e, fmt.Errorf("metadata: %w", err)
	}
	var err error
	if e.OccurredAt, err = time.Parse(time.RFC3339Nano, text("occurred_at")); err != nil {
		return e, fmt.Errorf("occurred_at: %w", err)
	}
	if s := get("seq"); s != nil {
		seq, err := strconv.ParseInt(*s, 10, 64)
		if err != nil {
			return e, fmt.Errorf("seq %q: not a number", *s)
		}
		e.Seq = &seq
	}
	e.Hash, e.PrevHash = get("hash"), get("prev_hash")
	unneutralise(&e)
	return e, nil
}

// unneutralise takes off the ' the export put before a cell a spreadsheet
// would run, unless the row's hash says the value began with it.
func unneutralise(e *store.ListedEvent) {
	cells := []**string{&e.TargetID, &e.ActorEmail, &e.UserAgent, &e.RequestID}
	var ambiguous []int
	orig := make([]*string, len(cells))
	for i, c := range cells {
		orig[i] = *c
		if v := *c; v != nil && len(*v) >= 2 && (*v)[0] == '\'' && strings.IndexByte("=+-@\t\r", (*v)[1]) >= 0 {
			ambiguous = append(ambiguous, i)
		}
	}
	if len(ambiguous) == 0 {
		return
	}
	if e.Seq != nil && e.Hash != nil && e.PrevHash != nil {
		want, err1 := parseHexHash(*e.Hash)
		prev, err2 := parseHexHash(*e.PrevHash)
		// Each reading, every ' taken off first; the first that matches
		// the seal wins.
		for mask := range 1 << len(ambiguous) {
			set(cells, orig, ambiguous, mask)
			if canonical, err := chain.Canonical(e.Event); err == nil && err1 == nil && err2 == nil && chain.Next(prev, *e.Seq, canonical) == want {
				return
			}
		}
	}
	set(cells, orig, ambiguous, 0)
}

// set takes the ' off the ambiguous cells whose bit in mask is clear.
func set(cells []**string, orig []*string, ambiguous []int, mask int) {
	for bit, i := range ambiguous {
		v := *orig[i]
		if mask&(1<<bit) == 0 {
			v = v[1:]
		}
		*cells[i] = &v
	}
}

// ParseManifest reads an export's manifest: the NDJSON line
// {"manifest": ...}, the bare object, or the Audit-Manifest header line in
// the headers a client saved (curl -D).
func ParseManifest(b []byte) (*store.Manifest, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Audit-Manifest") {
			b = value
			break
		}
	}
	var m struct {
		store.Manifest
		Wrapped *store.Manifest `json:"manifest"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Wrapped != nil {
		return m.Wrapped, nil
	}
	if m.OrgID == "" {
		return nil, errors.New("manifest: no org_id: not an export's manifest")
	}
	return &m.Manifest, nil
}

// csvCell is a cell as written: its text, and whether it was quoted (a
// quoted empty cell is an empty text, an unquoted one a null).
type csvCell struct {
	text   string
	quoted bool
}

// csvReader reads RFC 4180 records, keeping what encoding/csv does not: a
// quoted empty cell.
type csvReader struct {
	r    *bufio.Reader
	line int64
}

// record reads the next record and the line it starts on; io.EOF at the
// end.
func (c *csvReader) record() ([]csvCell, int64, error) {
	start := c.line + 1
	var cells []csvCell
	var cur []byte
	quoted, inQuotes, read := false, false, false
	end := func() ([]csvCell, int64, error) {
		c.line++
		return append(cells, csvCell{string(cur), quoted}), start, nil
	}
	for {
		b, err := c.r.ReadByte()
		if errors.Is(err, io.EOF) {
			if !read {
				return nil, 0, io.EOF
			}
			if inQuotes {
				return nil, 0, fmt.Errorf("line %d: a quoted cell without its end", start)
			}
			return end()
		}
		if err != nil {
			return nil, 0, err
		}
		read = true
		if len(cur) > maxLine {
			return nil, 0, fmt.Errorf("line %d: a cell longer than %d bytes", start, maxLine)
		}
		switch {
		case inQuotes && b == '"':
			if next, err := c.r.ReadByte(); err == nil && next == '"' {
				cur = append(cur, '"')
			} else {
				if err == nil {
					_ = c.r.UnreadByte()
				}
				inQuotes = false
			}
		case inQuotes:
			if b == '\n' {
				c.line++
			}
			cur = append(cur, b)
		case b == '"' && len(cur) == 0 && !quoted:
			quoted, inQuotes = true, true
		case b == ',':
			cells, cur, quoted = append(cells, csvCell{string(cur), quoted}), cur[:0], false
		case b == '\r':
			if next, err := c.r.ReadByte(); err == nil && next != '\n' {
				_ = c.r.UnreadByte()
			}
			return end()
		case b == '\n':
			return end()
		default:
			cur = append(cur, b)
		}
	}
}
