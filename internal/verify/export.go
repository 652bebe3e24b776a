package verify

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

// MaxExportRows bounds the sealed rows ExportFile checks: it keeps each
// one's seq and hashes (about 80 bytes) to check the chain in seq order
// once the file is read, since the export lists events by time.
const MaxExportRows = 10_000_000

// ExportResult is what verifying an exported file found.
type ExportResult struct {
	OrgID string
	// Rows counts the events read; Sealed those with a seq, from First
	// to Last; Recomputed those whose hash was recomputed from their
	// prev_hash; Gaps the runs of seqs from First to Last the file lacks
	// (events outside its range or filters, or removed lines).
	Rows, Sealed, First, Last, Recomputed, Gaps int64
	// Checkpoint is the manifest's signed checkpoint (nil: none), and
	// Tied the rows in the unbroken run of seqs ending at it, from
	// TiedFrom, each recomputed from its prev_hash: what the signature
	// proves.
	Checkpoint       *chain.Checkpoint
	Tied, TiedFrom   int64
	CheckpointInFile bool
	// Line and Break say where the file first fails to verify; Break is
	// nil when it verifies. Line 0: the file as a whole.
	Line  int64
	Break *chain.Break
}

// exportLink is a sealed row, kept to check the chain in seq order.
type exportLink struct {
	seq        int64
	hash, prev chain.Hash
	hasPrev    bool
	line       int64
	eventID    string
}

// exportChecker checks an export's rows as they are read, in file order,
// then the chain in seq order and the manifest.
type exportChecker struct {
	res   ExportResult
	links []exportLink
	last  *store.Event // the previous row, for the order
}

// fail records the first break.
func (c *exportChecker) fail(line, seq int64, eventID, format string, args ...any) {
	if c.res.Break == nil {
		c.res.Line, c.res.Break = line, &chain.Break{Seq: seq, EventID: eventID, Reason: fmt.Sprintf(format, args...)}
	}
}

// add checks one row: its org, its place in the export's order (newest
// first: occurred_at, then id, descending) and its hash, recomputed from
// its prev_hash.
func (c *exportChecker) add(line int64, e store.ListedEvent) {
	seq := int64(0)
	if e.Seq != nil {
		seq = *e.Seq
	}
	switch {
	case c.res.Rows == 0:
		c.res.OrgID = e.OrgID
	case e.OrgID != c.res.OrgID:
		c.fail(line, seq, e.ID, "an event of org %s in an export of org %s", e.OrgID, c.res.OrgID)
	case !e.OccurredAt.Before(c.last.OccurredAt) && !(e.OccurredAt.Equal(c.last.OccurredAt) && e.ID < c.last.ID):
		c.fail(line, seq, e.ID, "out of order: an export lists events newest first, and this one is not older than the line before (event %s): lines were moved or swapped", c.last.ID)
	}
	c.res.Rows++
	c.last = &e.Event
	if e.Seq == nil {
		if e.Hash != nil || e.PrevHash != nil {
			c.fail(line, 0, e.ID, "a hash without a seq")
		}
		return
	}
	c.res.Sealed++
	if c.res.Sealed > MaxExportRows {
		c.fail(line, seq, e.ID, "more than %d sealed rows: verify a narrower export (since, until)", MaxExportRows)
		return
	}
	l := exportLink{seq: seq, line: line, eventID: e.ID}
	var err error
	if l.hash, err = parseHexHash(deref(e.Hash)); err != nil || seq < 1 {
		c.fail(line, seq, e.ID, "the seal is not a seq from 1 and a hash: %v", err)
		return
	}
	if e.PrevHash != nil {
		if l.prev, err = parseHexHash(*e.PrevHash); err != nil {
			c.fail(line, seq, e.ID, "prev_hash: %v", err)
			return
		}
		l.hasPrev = true
		canonical, err := chain.Canonical(e.Event)
		if err != nil {
			c.fail(line, seq, e.ID, "%v", err)
			return
		}
		if h := chain.Next(l.prev, seq, canonical); h != l.hash {
			c.fail(line, seq, e.ID, "the event differs from what was sealed (its hash is %s, the seal says %s)", h, l.hash)
			return
		}
		c.res.Recomputed++
	}
	c.links = append(c.links, l)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// chain checks the links in seq order: no seq twice, and each link's
// prev_hash is the hash of the link before when the file has it.
func (c *exportChecker) chain() (missing []string) {
	slices.SortFunc(c.links, func(a, b exportLink) int { return cmpInt(a.seq, b.seq) })
	for i, l := range c.links {
		if i == 0 {
			c.res.First = l.seq
			continue
		}
		p := c.links[i-1]
		switch {
		case l.seq == p.seq:
			c.fail(l.line, l.seq, l.eventID, "seq %d is on line %d too", l.seq, p.line)
		case l.seq == p.seq+1 && !l.hasPrev:
			// Only a seal whose previous one was gone when prev_hash was
			// added lacks it; without it the row is not recomputed, so
			// taking it out would hide a changed event.
			c.fail(l.line, l.seq, l.eventID, "no prev_hash, though seq %d is on line %d: the row cannot be recomputed", p.seq, p.line)
		case l.seq == p.seq+1 && l.prev != p.hash:
			c.fail(l.line, l.seq, l.eventID, "its prev_hash is not the hash of seq %d (line %d): the chain is broken", p.seq, p.line)
		case l.seq > p.seq+1:
			c.res.Gaps++
			if len(missing) < 5 {
				missing = append(missing, seqRange(p.seq+1, l.seq-1))
			}
		}
		c.res.Last = l.seq
	}
	if len(c.links) == 1 {
		c.res.Last = c.res.First
	}
	return missing
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func seqRange(from, to int64) string {
	if from == to {
		return fmt.Sprint(from)
	}
	return fmt.Sprintf("%d to %d", from, to)
}

// finish checks the chain, then the manifest against the rows and the
// body's SHA-256, then its checkpoint with keys.
func (c *exportChecker) finish(m *store.Manifest, manifestLine int64, body []byte, keys map[string]ed25519.PublicKey) (ExportResult, error) {
	missing := c.chain()
	if m == nil {
		c.fail(0, 0, "", "no manifest: the file ends without the export's manifest (cut short, or not an export)")
		return c.res, nil
	}
	gaps := ""
	if len(missing) > 0 {
		gaps = "; seqs missing between the file's first and last: " + strings.Join(missing, ", ")
	}
	head := ""
	if i := len(c.links) - 1; i >= 0 {
		head = c.links[i].hash.String()
	}
	sum := hex.EncodeToString(body)
	switch {
	case c.res.Rows > 0 && m.OrgID != c.res.OrgID:
		c.fail(manifestLine, 0, "", "the manifest is of org %s, the rows of org %s", m.OrgID, c.res.OrgID)
	case m.Rows != c.res.Rows || m.Sealed != c.res.Sealed:
		c.fail(manifestLine, 0, "", "the manifest says %d rows (%d sealed), the file has %d (%d sealed): lines were removed or added%s", m.Rows, m.Sealed, c.res.Rows, c.res.Sealed, gaps)
	case m.FirstSeq != c.res.First || m.LastSeq != c.res.Last || m.HeadHash != head:
		c.fail(manifestLine, 0, "", "the manifest says seq %d to %d with head %s, the file has seq %d to %d with head %s", m.FirstSeq, m.LastSeq, m.HeadHash, c.res.First, c.res.Last, head)
	case m.BodySHA256 != sum:
		c.fail(manifestLine, 0, "", "the body's SHA-256 is %s, the manifest says %s: the rows were changed, moved, added or removed%s", sum, m.BodySHA256, gaps)
	}
	if m.Checkpoint == nil || c.res.Break != nil {
		return c.res, nil
	}
	cps, err := checkpointsOf([]store.Checkpoint{*m.Checkpoint})
	if err != nil {
		c.fail(manifestLine, 0, "", "the manifest's checkpoint: %v", err)
		return c.res, nil
	}
	cp := cps[0]
	c.res.Checkpoint = &cp
	if keys == nil {
		return c.res, errors.New("the export holds a signed checkpoint: give the public key it was signed with (--key)")
	}
	pub, ok := keys[cp.KeyID]
	switch {
	case !ok:
		c.fail(manifestLine, cp.Seq, "", "the manifest's checkpoint is signed by key %s, not by a key given", cp.KeyID)
	case cp.OrgID != c.res.OrgID && c.res.Rows > 0:
		c.fail(manifestLine, cp.Seq, "", "the manifest's checkpoint is of org %s", cp.OrgID)
	default:
		if err := cp.Verify(pub); err != nil {
			c.fail(manifestLine, cp.Seq, "", "the manifest's %v", err)
		}
	}
	if c.res.Break == nil {
		c.tie(cp)
	}
	return c.res, nil
}

// tie compares the checkpoint with the row at its seq, and counts the
// rows of the unbroken run down from it: those the signature proves.
func (c *exportChecker) tie(cp chain.Checkpoint) {
	i, found := slices.BinarySearchFunc(c.links, cp.Seq, func(l exportLink, seq int64) int { return cmpInt(l.seq, seq) })
	if !found {
		return
	}
	if l := c.links[i]; l.hash != cp.Hash {
		c.fail(l.line, l.seq, l.eventID, "the chain differs from the checkpoint signed at %s (hash %s)", cp.SignedAt.UTC().Format(chain.TimeLayout), cp.Hash)
		return
	}
	c.res.CheckpointInFile = true
	j := i
	for j > 0 && c.links[j-1].seq == c.links[j].seq-1 {
		j--
	}
	if !c.links[j].hasPrev { // its event was not recomputed
		j++
	}
	if j <= i {
		c.res.Tied, c.res.TiedFrom = int64(i-j+1), c.links[j].seq
	}
}

// ExportFile verifies offline an NDJSON export (format=ndjson of the
// listing): each row's hash recomputed from its prev_hash, the order of
// the rows, the chain where their seqs follow each other, the manifest
// on the last line (rows, seqs, head, the body's SHA-256) and its
// checkpoint's signature with keys (by key id), and the row at the
// checkpoint's seq.
func ExportFile(r io.Reader, keys map[string]ed25519.PublicKey) (ExportResult, error) {
	var c exportChecker
	body := sha256.New()
	var m *store.Manifest
	var manifestLine int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	sc.Split(linesWithEnds)
	line := int64(0)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if m != nil {
			c.fail(line, 0, "", "a line after the manifest (line %d)", manifestLine)
			break
		}
		var row struct {
			store.ListedEvent
			Manifest *store.Manifest `json:"manifest"`
		}
		if err := json.Unmarshal(b, &row); err != nil {
			c.fail(line, 0, "", "not an event of the export: %v", err)
			break
		}
		if err := checkKeys(b, lineFields); err != nil {
			c.fail(line, 0, row.ID, "%v", err)
			break
		}
		if row.Manifest != nil {
			m, manifestLine = row.Manifest, line
			continue
		}
		body.Write(b)
		c.add(line, row.ListedEvent)
		if c.res.Break != nil {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return c.res, fmt.Errorf("read the export: %w", err)
	}
	if c.res.Break != nil {
		return c.res, nil
	}
	return c.finish(m, manifestLine, body.Sum(nil), keys)
}

// linesWithEnds splits lines keeping their "\n", so that the body's
// SHA-256 covers the bytes as served.
func linesWithEnds(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// IsExport says whether the file ends with an export's manifest line
// rather than an event (a feed saved as NDJSON), reading its last bytes.
func IsExport(f io.ReadSeeker) (bool, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	start := max(0, end-maxLine)
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return false, err
	}
	tail, err := io.ReadAll(f)
	if err != nil {
		return false, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	tail = bytes.TrimRight(tail, "\r\n")
	last := tail[bytes.LastIndexByte(tail, '\n')+1:]
	return bytes.HasPrefix(last, []byte(`{"manifest":`)), nil
}
