package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// endOfTime stands for "no until": later than any event.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// listEvents serves GET /api/orgs/{id}/audit: a page of the org's events as
// JSON, newest first, or with format=csv every matching event as CSV.
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
	if params.csv {
		s.exportEvents(c, q, params.bom)
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
	// Events are store.Event values, each encoded as its row arrived.
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
		last   store.Event
		more   bool
		encErr error
	)
	err := s.store.Page(ctx, q, func(e store.Event) bool {
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
// and LibreOffice then read accents right). Headers go out with the first bytes, so an
// error before any row is still a problem response; an error after it cuts
// the response short (no final chunk), which clients see as a failed
// download rather than a complete file.
func (s *server) exportEvents(c *gin.Context, q store.Query, bom bool) {
	if !s.orgExports.acquire(q.OrgID) {
		s.writeProblem(c, tooManyRequests(fmt.Sprintf("%d CSV exports of this org are running, the most one org may run at once; retry when one ends", s.orgExports.max), 10*time.Second))
		return
	}
	defer s.orgExports.release(q.OrgID)
	select {
	case s.exports <- struct{}{}:
		defer func() { <-s.exports }()
	default:
		s.writeProblem(c, tooManyRequests(fmt.Sprintf("%d CSV exports are running, the most this server runs at once; retry shortly", cap(s.exports)), 10*time.Second))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.exportTotal)
	defer cancel()
	h := c.Writer.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8; header=present")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, exportFilename(q, s.now())))
	h.Set("Cache-Control", "no-store")
	w := &exportWriter{c: c, cancel: cancel, bom: bom}
	w.buf = bufio.NewWriterSize(&floorWriter{c: c, bytes: s.exportFloorBytes, window: s.exportFloorWindow}, 64<<10)
	_, err := s.store.Export(ctx, q, w)
	if w.rows > 1 {
		s.metrics.exportedRows.Add(float64(w.rows - 1)) // the first is the header
	}
	if err == nil {
		err = w.buf.Flush()
	}
	if err == nil {
		return
	}
	if !w.started {
		h.Del("Content-Disposition")
		s.fail(c, err)
		return
	}
	if p, _ := problemFor(c.Request.Context(), err); p != nil { // else the client left
		s.logger.Error("CSV export cut short", "org", q.OrgID, "rows", w.rows, "err", err)
	}
	// net/http closes the connection without the final chunk: the client
	// knows the file is incomplete. (s.recover lets this panic through.)
	panic(http.ErrAbortHandler)
}

// exportFilename names the org and the range exported, in UTC.
func exportFilename(q store.Query, now time.Time) string {
	until := q.Before.OccurredAt
	if until.After(now) {
		until = now
	}
	const stamp = "20060102T150405Z"
	return fmt.Sprintf("audit-%s-%s-%s.csv", q.OrgID, q.Since.UTC().Format(stamp), until.UTC().Format(stamp))
}

// exportWriter receives the COPY stream, one row per Write: it sends the
// headers with the first row, counts rows and stops the query if the client
// cannot take more.
type exportWriter struct {
	c       *gin.Context
	buf     *bufio.Writer
	cancel  context.CancelFunc
	bom     bool // write a UTF-8 byte-order mark first
	started bool
	rows    int64
}

func (w *exportWriter) Write(p []byte) (int, error) {
	if !w.started {
		w.started = true
		w.c.Status(http.StatusOK)
		w.c.Writer.WriteHeaderNow()
		if w.bom {
			w.buf.WriteString("\ufeff") // the buffer is empty: cannot fail
		}
	}
	w.rows++
	// COPY ends each row with LF; RFC 4180 wants CRLF. Each Write is one
	// whole row, so its last byte is the row's end (a line break inside a
	// quoted cell stays as it is, which RFC 4180 allows).
	row := p
	if len(row) > 0 && row[len(row)-1] == '\n' {
		row = row[:len(row)-1]
	}
	_, err := w.buf.Write(row)
	if err == nil {
		_, err = w.buf.WriteString("\r\n")
	}
	if err != nil {
		w.cancel()
		return 0, err
	}
	return len(p), nil
}
