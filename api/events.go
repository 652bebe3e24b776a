package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// endOfTime stands for "no until": later than any event.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// listEvents serves GET /api/orgs/{id}/audit: a page of the org's events as
// JSON, newest first, or with format=csv or ndjson every matching event,
// with the export's manifest.
func (s *server) listEvents(c *gin.Context) {
	params, err := parseListParams(c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	q, _, err := s.eventQuery(c, params)
	if err != nil {
		s.fail(c, err)
		return
	}
	if params.export() {
		s.exportEvents(c, q, params.format == "ndjson", params.bom)
		return
	}
	s.pageEvents(c, q, params.limit)
}

// eventQuery resolves the parameters against the org's read scope (the
// retention floor, the tier tables), the catalog and the cursor, and returns
// the scope too.
func (s *server) eventQuery(c *gin.Context, p listParams) (store.Query, store.Scope, error) {
	ctx, cancel := s.queryContext(c)
	defer cancel()
	org := orgOf(c)
	now := s.now()
	// created: narrows range= too (it gives until, range gives none): when
	// it leaves no time of the range, the fault is q's, as with since/until.
	if p.window > 0 && !p.until.IsZero() && !now.Add(-p.window).Before(p.until) {
		them := "them"
		if len(p.search.created) == 1 {
			them = "it"
		}
		return store.Query{}, store.Scope{}, invalidParamProblem("q", fmt.Sprintf("%s: no time of range=%s fits %s; nothing could match",
			strings.Join(p.search.created, " and "), p.rangeName, them))
	}
	scope, err := s.store.Scope(ctx, org.String(), s.asOf())
	if err != nil {
		return store.Query{}, scope, err
	}
	q := store.Query{OrgID: org.String(), Tiers: scope.Tiers, Since: scope.Floor, Actor: p.actor,
		Before: store.Position{OccurredAt: endOfTime, ID: store.MinID}, Now: now}
	if p.window > 0 && now.Add(-p.window).After(q.Since) {
		q.Since = now.Add(-p.window)
	}
	if p.since.After(q.Since) {
		q.Since = p.since
	}
	if !p.until.IsZero() {
		q.Before.OccurredAt = p.until
	}
	if p.cursor != "" {
		key, err := s.keys.cursorKey(ctx)
		if err != nil {
			return store.Query{}, scope, err
		}
		pos, err := decodeCursor(key, org, p.cursor)
		if err != nil {
			return store.Query{}, scope, invalidParamProblem("cursor", err.Error())
		}
		// Keyset: start below the cursor, or below until if that is lower.
		if pos.OccurredAt.Before(q.Before.OccurredAt) {
			q.Before = pos
		}
	}
	if p.filtersActions() {
		actions, err := s.catalog.get(ctx)
		if err != nil {
			return store.Query{}, scope, err
		}
		q.Actions = actionFilter(actions, p.filterParams)
	}
	return q, scope, nil
}

// getEvent serves GET /api/orgs/{id}/audit/events/{event_id}: one event of
// the org, what a link to it shows. With at (the event's occurred_at, which
// the page's links carry) it is one index probe; without it the org's
// retention is searched. An id that is not the org's, or older than the plan
// keeps, is a 404.
func (s *server) getEvent(c *gin.Context) {
	id, err := uuid.Parse(c.Param("event_id"))
	if err != nil {
		s.writeProblem(c, errEventNotFound)
		return
	}
	var at time.Time
	var bad []invalidParam
	badf := func(name, format string, args ...any) {
		bad = append(bad, invalidParam{Name: name, Reason: fmt.Sprintf(format, args...)})
	}
	eachParam(c.Request.URL.Query(), []string{"at"}, badf, func(_, v string) {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			badf("at", "not an RFC 3339 time such as 2026-01-02T15:04:05.123456Z")
		}
		at = t.UTC()
	})
	if len(bad) > 0 {
		s.fail(c, invalidParams(bad))
		return
	}
	ctx, cancel := s.queryContext(c)
	defer cancel()
	scope, err := s.store.Scope(ctx, orgOf(c).String(), s.asOf())
	if err != nil {
		s.fail(c, err)
		return
	}
	q := store.Query{OrgID: orgOf(c).String(), Tiers: scope.Tiers, Since: scope.Floor, Before: store.Position{OccurredAt: endOfTime}}
	if !at.IsZero() {
		q.Since, q.Before.OccurredAt = maxTime(at, scope.Floor), at
	}
	e, err := s.store.Event(ctx, q, id.String())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, e)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// page is the JSON body of a page.
type page struct {
	// Events are store.ListedEvent values, each encoded as its row arrived.
	Events []json.RawMessage `json:"events"`
	// NextCursor continues the listing below the last event; null on the
	// last page.
	NextCursor *string `json:"next_cursor"`
}

// pageEvents answers a page. Events are encoded one by one as their rows
// arrive, and the page ends early, with a cursor, when the next one would
// take the events past the byte budget (one event is always shown, so a walk
// moves on): what the server holds is bounded however large each event.
func (s *server) pageEvents(c *gin.Context, q store.Query, limit int) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	q.Limit = limit + 1 // one more tells whether there is a next page
	body := page{Events: []json.RawMessage{}}
	var (
		size   int // of the events, with the commas between them
		last   store.ListedEvent
		more   bool
		encErr error
	)
	err := s.store.Page(ctx, q, func(e store.ListedEvent) bool {
		if len(body.Events) == limit {
			more = true
			return false
		}
		b, err := json.Marshal(e)
		if err != nil {
			encErr = err
			return false
		}
		if len(body.Events) > 0 && size+1+len(b) > s.pageBytes {
			more = true
			return false
		}
		body.Events = append(body.Events, b)
		size += len(b) + 1
		last = e
		return true
	})
	if err == nil {
		err = encErr
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if more {
		key, err := s.keys.cursorKey(ctx)
		if err != nil {
			s.fail(c, err)
			return
		}
		next := encodeCursor(key, orgOf(c), store.Position{OccurredAt: last.OccurredAt, ID: last.ID})
		body.NextCursor = &next
		u := *c.Request.URL
		query := u.Query()
		query.Set("cursor", next)
		c.Header("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, u.Path, query.Encode()))
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, body)
}

// exportEvents streams every event of q as CSV, straight from PostgreSQL's
// COPY through a fixed buffer, after a UTF-8 byte-order mark if bom (Excel
// and LibreOffice then read accents right), or as NDJSON, one line per row
// as it arrives, each event with its seal, and ends with the manifest
// (NDJSON: the last line; CSV: the Audit-Manifest trailer; the body's
// SHA-256 leaves out the byte-order mark). Headers go out with the first
// bytes, so an error before any row is still a problem response; an error
// after it cuts the response short (no final chunk, no manifest), which
// clients see as a failed download rather than a complete file.
func (s *server) exportEvents(c *gin.Context, q store.Query, ndjson, bom bool) {
	if !s.orgExports.acquire(q.OrgID) {
		s.writeProblem(c, tooManyRequests(fmt.Sprintf("%d exports of this org are running, the most one org may run at once; retry when one ends", s.orgExports.max), 10*time.Second))
		return
	}
	defer s.orgExports.release(q.OrgID)
	select {
	case s.exports <- struct{}{}:
		defer func() { <-s.exports }()
	default:
		s.writeProblem(c, tooManyRequests(fmt.Sprintf("%d exports are running, the most this server runs at once; retry shortly", cap(s.exports)), 10*time.Second))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.exportTotal)
	defer cancel()
	h := c.Writer.Header()
	ext := "csv"
	if ndjson {
		ext = "ndjson"
		h.Set("Content-Type", "application/x-ndjson")
	} else {
		h.Set("Content-Type", "text/csv; charset=utf-8; header=present")
		h.Set("Trailer", manifestTrailer)
	}
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, exportFilename(q, s.now(), ext)))
	h.Set("Cache-Control", "no-store")
	w := &exportWriter{c: c, cancel: cancel, bom: bom, sum: sha256.New(), m: store.Manifest{OrgID: q.OrgID}}
	w.buf = bufio.NewWriterSize(&floorWriter{c: c, bytes: s.exportFloorBytes, window: s.exportFloorWindow}, 64<<10)
	var err error
	if ndjson {
		err = s.store.Stream(ctx, q, func(e store.ExportedEvent) error {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			w.seal(e.Seq, e.Hash)
			return w.row(b, "\n")
		})
	} else {
		_, err = s.store.Export(ctx, q, w)
	}
	s.metrics.exportedRows.Add(float64(w.m.Rows))
	if err == nil {
		err = s.endExport(ctx, w, ndjson)
	}
	if err == nil {
		return
	}
	if !w.started {
		h.Del("Content-Disposition")
		h.Del("Trailer")
		s.fail(c, err)
		return
	}
	if p, _ := problemFor(c.Request.Context(), err); p != nil { // else the client left
		s.logger.Error("export cut short", "org", q.OrgID, "rows", w.m.Rows, "err", err)
	}
	// net/http closes the connection without the final chunk: the client
	// knows the file is incomplete. (s.recover lets this panic through.)
	panic(http.ErrAbortHandler)
}

// manifestTrailer is the HTTP trailer that carries a CSV export's manifest.
const manifestTrailer = "Audit-Manifest"

// endExport completes the manifest and sends it after the rows.
func (s *server) endExport(ctx context.Context, w *exportWriter, ndjson bool) error {
	m := w.m
	m.BodySHA256 = hex.EncodeToString(w.sum.Sum(nil))
	cp, err := s.store.CheckpointCovering(ctx, m.OrgID, m.FirstSeq, m.LastSeq)
	if err != nil {
		return err
	}
	m.Checkpoint = cp
	if !ndjson {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := w.buf.Flush(); err != nil {
			return err
		}
		w.c.Writer.Header().Set(manifestTrailer, string(b))
		return nil
	}
	b, err := json.Marshal(map[string]store.Manifest{"manifest": m})
	if err != nil {
		return err
	}
	w.sum = nil // the body ends before the manifest
	if err := w.row(b, "\n"); err != nil {
		return err
	}
	return w.buf.Flush()
}

// exportFilename names the org and the range exported, in UTC.
func exportFilename(q store.Query, now time.Time, ext string) string {
	until := q.Before.OccurredAt
	if until.After(now) {
		until = now
	}
	const stamp = "20060102T150405Z"
	return fmt.Sprintf("audit-%s-%s-%s.%s", q.OrgID, q.Since.UTC().Format(stamp), until.UTC().Format(stamp), ext)
}

// exportWriter sends an export's rows: it sends the headers with the first
// row, hashes the body, builds the manifest and stops the query if the
// client cannot take more. As the io.Writer of a COPY it receives one CSV
// row per Write.
type exportWriter struct {
	c       *gin.Context
	buf     *bufio.Writer
	cancel  context.CancelFunc
	sum     hash.Hash // of the body; nil once it has ended
	m       store.Manifest
	bom     bool // write a UTF-8 byte-order mark first
	started bool
}

// Write takes one row of the CSV COPY, the header first.
func (w *exportWriter) Write(p []byte) (int, error) {
	// COPY ends each row with LF; RFC 4180 wants CRLF. Each Write is one
	// whole row, so its last byte is the row's end (a line break inside a
	// quoted cell stays as it is, which RFC 4180 allows).
	row := bytes.TrimSuffix(p, []byte{'\n'})
	if w.started {
		w.seal(sealCells(row))
	}
	if err := w.row(row, "\r\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sealCells reads a CSV row's seq and hash: the cells seq, hash, prev_hash
// end it, digits and hex that are never quoted, empty while unsealed.
func sealCells(row []byte) (*int64, *string) {
	cells := bytes.Split(row[max(0, len(row)-(20+64+64+3)):], []byte{','})
	if len(cells) < 3 {
		return nil, nil
	}
	seq, err := strconv.ParseInt(string(cells[len(cells)-3]), 10, 64)
	if err != nil {
		return nil, nil
	}
	hash := string(cells[len(cells)-2])
	return &seq, &hash
}

// seal counts an event's row and its seal in the manifest.
func (w *exportWriter) seal(seq *int64, hash *string) {
	w.m.Rows++
	if seq == nil || hash == nil {
		return
	}
	w.m.Sealed++
	if w.m.FirstSeq == 0 || *seq < w.m.FirstSeq {
		w.m.FirstSeq = *seq
	}
	if *seq > w.m.LastSeq {
		w.m.LastSeq, w.m.HeadHash = *seq, *hash
	}
}

// row sends one row and its line end, sending the headers first.
func (w *exportWriter) row(row []byte, end string) error {
	if !w.started {
		w.started = true
		w.c.Status(http.StatusOK)
		w.c.Writer.WriteHeaderNow()
		if w.bom {
			w.buf.WriteString("\ufeff") // the buffer is empty: cannot fail
		}
	}
	if w.sum != nil {
		w.sum.Write(row)
		w.sum.Write([]byte(end))
	}
	_, err := w.buf.Write(row)
	if err == nil {
		_, err = w.buf.WriteString(end)
	}
	if err != nil {
		w.cancel()
	}
	return err
}
