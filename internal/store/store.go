// Package store is the read side of the audit log: every query the API runs,
// against a pool connected as a role holding audit_reader. It authenticates
// tokens, finds an org's read scope, lists events a page at a time and
// streams them as CSV straight from PostgreSQL. The SQL of the event queries
// is in events.sql.
package store

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	sqlcode "github.com/auditlog/auditlog/sql"
)

// Store runs the read side's queries.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool, which should connect as a role holding
// audit_reader (it needs nothing more).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ErrUnauthenticated means the token is unknown, expired or revoked.
var ErrUnauthenticated = errors.New("token unknown, expired or revoked")

// ErrUnauthenticatedOnStandby is ErrUnauthenticated (errors.Is holds) from a
// hot standby, which may not have replayed yet the token's minting on the
// primary.
var ErrUnauthenticatedOnStandby = fmt.Errorf("%w, as far as this hot standby has replayed", ErrUnauthenticated)

// Principal is who a valid token acts as, and their role in the org asked
// about.
type Principal struct {
	PATID  string
	UserID string
	// Role is the user's role in the org: owner, admin or member; empty when
	// the user is not a member or there is no such org.
	Role string
}

// Authenticate looks up the token whose SHA-256 is tokenHash, as of at (nil:
// the database's clock), and its user's role in org orgID (empty: none asked
// about). It returns
// ErrUnauthenticated for a token that is unknown, expired or revoked
// (ErrUnauthenticatedOnStandby on a hot standby).
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte, orgID string, at *time.Time) (Principal, error) {
	var p Principal
	var role *string
	err := s.pool.QueryRow(ctx, "SELECT pat_id, user_id, role FROM audit.authenticate($1, $2, $3)",
		tokenHash, nullString(orgID), at).Scan(&p.PATID, &p.UserID, &role)
	if errors.Is(err, pgx.ErrNoRows) {
		var standby bool
		if err := s.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
			return Principal{}, fmt.Errorf("authenticate: %w", err)
		}
		if standby {
			return Principal{}, ErrUnauthenticatedOnStandby
		}
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	if role != nil {
		p.Role = *role
	}
	return p, nil
}

// Scope is what a reader may see of one org.
type Scope struct {
	// Name is the org's display name.
	Name string
	// Plan is the org's current plan.
	Plan string
	// RetentionDays is how many days of events the plan keeps.
	RetentionDays int
	// Floor is the earliest instant that may be shown: the plan's retention,
	// and what earlier plans had already let expire.
	Floor time.Time
	// Tiers are the tier tables holding the org's events.
	Tiers []string
}

// ErrNoSuchOrg means there is no org with the id asked about.
var ErrNoSuchOrg = errors.New("no such org")

// Scope returns the read scope of org orgID as of at (nil: the database's
// clock, which decides retention everywhere else too).
func (s *Store) Scope(ctx context.Context, orgID string, at *time.Time) (Scope, error) {
	var sc Scope
	err := s.pool.QueryRow(ctx, `
		SELECT audit.org_name($1), plan, (extract(epoch FROM retention) / 86400)::int, floor, tiers
		FROM audit.org_scope($1, $2)`, orgID, at).
		Scan(&sc.Name, &sc.Plan, &sc.RetentionDays, &sc.Floor, &sc.Tiers)
	if errors.Is(err, pgx.ErrNoRows) {
		return Scope{}, ErrNoSuchOrg
	}
	if err != nil {
		return Scope{}, fmt.Errorf("read scope of org %s: %w", orgID, err)
	}
	return sc, nil
}

// Action is one entry of the catalog.
type Action struct {
	Action       string   `json:"action" db:"action"`
	TargetType   string   `json:"target_type" db:"target_type"`
	Description  string   `json:"description" db:"description"`
	RequiredKeys []string `json:"required_keys" db:"required_keys"`
	// Sentence is how an event of the action reads (audit.action_sentences).
	Sentence string `json:"sentence" db:"sentence"`
}

// Actions returns the catalog, by action name.
func (s *Store) Actions(ctx context.Context) ([]Action, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT action, target_type, description, required_keys, coalesce(sentence, '') AS sentence
		FROM audit.actions LEFT JOIN audit.action_sentences USING (action) ORDER BY action`)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	actions, err := pgx.CollectRows(rows, pgx.RowToStructByName[Action])
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return actions, nil
}

// Key returns the API's secret of the given name (cursor).
func (s *Store) Key(ctx context.Context, name string) ([]byte, error) {
	var key []byte
	if err := s.pool.QueryRow(ctx, "SELECT audit.api_key($1)", name).Scan(&key); err != nil {
		return nil, fmt.Errorf("read %s key: %w", name, err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("read %s key: missing or short; run auditlog migrate", name)
	}
	return key, nil
}

// Event is one audit event as the API shows it.
type Event struct {
	ID         string          `json:"id" db:"id"`
	OrgID      string          `json:"org_id" db:"org_id"`
	OccurredAt time.Time       `json:"occurred_at" db:"occurred_at"`
	Action     string          `json:"action" db:"action"`
	TargetType string          `json:"target_type" db:"target_type"`
	TargetID   *string         `json:"target_id" db:"target_id"`
	ActorType  string          `json:"actor_type" db:"actor_type"`
	ActorID    *string         `json:"actor_id" db:"actor_id"`
	ActorEmail *string         `json:"actor_email" db:"actor_email"`
	IP         *string         `json:"ip" db:"ip"`
	UserAgent  *string         `json:"user_agent" db:"user_agent"`
	RequestID  *string         `json:"request_id" db:"request_id"`
	Metadata   json.RawMessage `json:"metadata" db:"metadata"`
}

// ListedEvent is an event as the listing and the exports show it: with its
// seal, once the sealer has given it one (docs/feed.md). Seq, Hash and
// PrevHash are nil until then; PrevHash also when retention pruned the
// previous seal.
type ListedEvent struct {
	Event
	Seq      *int64  `json:"seq" db:"seq"`
	Hash     *string `json:"hash" db:"hash"`           // hex
	PrevHash *string `json:"prev_hash" db:"prev_hash"` // hex: the hash of seq-1
}

// ExportedEvent is an event as the exports write it: listed, and as its
// action's sentence reads (audit.event_sentence), as on the Activity page.
// The sentence is not part of what the seal's hash covers.
type ExportedEvent struct {
	ListedEvent
	Sentence string `json:"sentence" db:"sentence"`
}

// Position is a place in an org's events, newest first: an event's
// (occurred_at, id). Pages start strictly below one.
type Position struct {
	OccurredAt time.Time
	ID         string
}

// MinID is the smallest event id: a Position at an instant with MinID is
// below every event of that instant, so starting below it excludes them all.
const MinID = "00000000-0000-0000-0000-000000000000"

// Query selects an org's events.
type Query struct {
	OrgID string
	// Tiers are the tier tables to read (Scope.Tiers).
	Tiers []string
	// Since is the earliest instant to include, at least Scope.Floor.
	Since time.Time
	// Before is where the result starts: only events strictly below it.
	Before Position
	// Actions, if not nil, keeps only events of these actions; an empty,
	// non-nil slice matches nothing.
	Actions []string
	// Actor, if not empty, keeps only events of the actor with this email,
	// in any case.
	Actor string
	// Limit is the page size (Page only).
	Limit int
	// Bucket (hour, day or week) and Zone (an IANA time zone name) group a
	// count (CountByBucket only).
	Bucket, Zone string
	// Now is the present, where a read's first window starts (windows);
	// zero: at Before. It decides how a read is cut, not what it returns.
	Now time.Time
}

// matchesNothing says whether q is known to match nothing without asking
// the database: no action allowed, or a range that ends before it starts.
func (q Query) matchesNothing() bool {
	return (q.Actions != nil && len(q.Actions) == 0) || q.Since.After(q.Before.OccurredAt)
}

// maxWindowDays is the most UTC days one statement reads.
const maxWindowDays = 8

// windows cuts q's range into the ranges a read's statements cover, newest
// first, on a grid of UTC days anchored at the day of Now (or of Before, when
// Now is zero): that day and any after it, then the days below, 1, 2, 4 and
// then maxWindowDays at a time, down to Since; a window wholly above Before
// is left out. Each statement runs in a transaction of its own and its plan
// prunes the leaves outside its window before it opens them, so a read
// holds the locks of a few leaves at a time, where a statement planned
// without its bounds locks every leaf of the tier table. The grid keeps a
// window's bounds, and so its statement's text and cached plan, the same
// for every read of the day but the range's first and last window.
func (q Query) windows() []Query {
	if q.matchesNothing() {
		return []Query{q}
	}
	anchor := q.Now
	if anchor.IsZero() {
		anchor = q.Before.OccurredAt
	}
	y, m, d := anchor.UTC().Date()
	lo := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	var hi time.Time // zero: the first window has no top but Before
	var ws []Query
	for span := 1; ; span = min(2*span, maxWindowDays) {
		// A position at the window's start with an id still has the events of
		// that instant below it.
		if lo.Before(q.Before.OccurredAt) || lo.Equal(q.Before.OccurredAt) && q.Before.ID != MinID {
			w := q
			if lo.After(q.Since) {
				w.Since = lo
			}
			if !hi.IsZero() && !hi.After(w.Before.OccurredAt) {
				w.Before = Position{OccurredAt: hi, ID: MinID}
			}
			ws = append(ws, w)
		}
		if !lo.After(q.Since) {
			return ws
		}
		hi, lo = lo, lo.AddDate(0, 0, -span)
	}
}

// pageWindows are the statements of a page or a count: one for a range of
// up to maxWindowDays, the windows of a longer one.
func (q Query) pageWindows() []Query {
	if q.end().Sub(q.Since) <= maxWindowDays*24*time.Hour {
		return []Query{q}
	}
	return q.windows()
}

// end is where q's range ends: Before, or Now if earlier.
func (q Query) end() time.Time {
	if !q.Now.IsZero() && q.Now.Before(q.Before.OccurredAt) {
		return q.Now
	}
	return q.Before.OccurredAt
}

// nextRound is how many of windows ws, the next ones of a page, to read in
// one round trip, given that the rounds so far read from end down to read
// and found found events, want more. It reaches as far as the density seen
// so far says the page needs, and half again, or four times as far as read
// so far (8 days at least) when nothing was found: a sparse page takes two
// or three round trips, and a window read for nothing costs its scans of a
// few leaves, up to want rows.
func nextRound(ws []Query, end, read time.Time, found, want int) int {
	if found == 0 && read.IsZero() {
		return 1
	}
	done := end.Sub(read)
	reach := max(4*done, maxWindowDays*24*time.Hour)
	if found > 0 {
		// In float, capped: a year's nanoseconds times want overflow a Duration.
		const farthest = 100 * 365 * 24 * time.Hour
		reach = time.Duration(min(float64(done)*(1+1.5*float64(want)/float64(found)), float64(farthest)))
	}
	n := 1
	for n < len(ws) && ws[n].Before.OccurredAt.After(end.Add(-reach)) {
		n++
	}
	return n
}

// genericPlanSQL makes the statement after it, in its transaction alone,
// run on its prepared statement's generic plan: planned once per
// connection and text, and pruned at plan time on the window's bounds,
// which the statement carries as literals (dayBounds).
const genericPlanSQL = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"

// dayBounds are the literal bounds of w's statement: the UTC days its
// range touches, from the start of Since's day to the end of Before's (its
// start, when the range ends strictly below a midnight). Whole days keep the
// text the same from one read to the next; the exact bounds are bind
// parameters.
func dayBounds(w Query) (from, to string) {
	y, m, d := w.Since.UTC().Date()
	lo := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	y, m, d = w.Before.OccurredAt.UTC().Date()
	hi := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if !(hi.Equal(w.Before.OccurredAt) && w.Before.ID == MinID) {
		hi = hi.AddDate(0, 0, 1)
	}
	return timeLiteral(lo), timeLiteral(hi)
}

// Page hands up to q.Limit events to each, newest first, one at a time as
// they arrive, and stops reading when each returns false: the caller decides
// how much to hold. It reads the windows of the range (pageWindows) in
// pipelined rounds (nextRound) and stops when the page is full: most pages
// fill up in the first window.
func (s *Store) Page(ctx context.Context, q Query, each func(ListedEvent) bool) error {
	if q.matchesNothing() {
		return nil
	}
	want, stopped := q.Limit, false
	ws := q.pageWindows()
	var read time.Time
	for len(ws) > 0 && want > 0 && !stopped {
		round := ws[:nextRound(ws, q.end(), read, q.Limit-want, want)]
		ws = ws[len(round):]
		for i := range round {
			round[i].Limit = want
		}
		read = round[len(round)-1].Since
		err := s.read(ctx, round, pageQuery, func(rows pgx.Rows) error {
			for want > 0 && !stopped && rows.Next() {
				e, err := pgx.RowToStructByName[ListedEvent](rows)
				if err != nil {
					return err
				}
				want--
				stopped = !each(e)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("list events of org %s: %w", q.OrgID, err)
		}
	}
	return nil
}

// BucketCount is how many events one bucket (an hour, day or week of
// Query.Zone) has.
type BucketCount struct {
	Start time.Time `db:"start"`
	Count int64     `db:"count"`
}

// Buckets are the values of Query.Bucket.
var Buckets = []string{"hour", "day", "week"}

// CountByBucket counts the events q selects per q.Bucket of q.Zone, for the
// buckets that have any, by start. A bucket cut by two statements (windows
// are cut at UTC midnights) is returned once per statement; the caller
// adds them up. q.Limit is ignored.
func (s *Store) CountByBucket(ctx context.Context, q Query) ([]BucketCount, error) {
	if q.matchesNothing() {
		return nil, nil
	}
	if !slices.Contains(Buckets, q.Bucket) {
		return nil, fmt.Errorf("count events of org %s: unknown bucket %q", q.OrgID, q.Bucket)
	}
	var counts []BucketCount
	err := s.read(ctx, q.pageWindows(), countQuery, func(rows pgx.Rows) error {
		part, err := pgx.CollectRows(rows, pgx.RowToStructByName[BucketCount])
		counts = append(counts, part...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count events of org %s: %w", q.OrgID, err)
	}
	slices.SortFunc(counts, func(a, b BucketCount) int { return a.Start.Compare(b.Start) })
	return counts, nil
}

// ErrNoSuchEvent means the org has no event of that id in the range asked.
var ErrNoSuchEvent = errors.New("no such event")

// Event returns the event of org q.OrgID with this id, with its seal, if
// it is within [q.Since, q.Before.OccurredAt] (give both its time, when
// known, to find it with one index probe in one leaf); ErrNoSuchEvent if
// not.
func (s *Store) Event(ctx context.Context, q Query, id string) (ListedEvent, error) {
	p := placeholders{Org: "$1", Event: "$2", Since: "$3", BeforeAt: "$4"}
	p.From, p.To = dayBounds(q)
	sql, err := render(q, p, eventQuery)
	if err != nil {
		return ListedEvent{}, err
	}
	rows, _ := s.pool.Query(ctx, sql, q.OrgID, id, q.Since, q.Before.OccurredAt)
	e, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[ListedEvent])
	if errors.Is(err, pgx.ErrNoRows) {
		return ListedEvent{}, ErrNoSuchEvent
	}
	if err != nil {
		return ListedEvent{}, fmt.Errorf("read event %s of org %s: %w", id, q.OrgID, err)
	}
	return e, nil
}

// read runs the statements of windows ws of the given kind, with bind
// parameters, in one round trip, and hands each one's rows to collect, in
// order. Each runs in a transaction of its own, so its locks go before the
// next one starts, on its generic plan (genericPlanSQL).
func (s *Store) read(ctx context.Context, ws []Query, kind queryKind, collect func(pgx.Rows) error) error {
	batch := &pgx.Batch{}
	for _, w := range ws {
		sql, args, err := statement(w, kind)
		if err != nil {
			return err
		}
		batch.Queue("BEGIN READ ONLY")
		batch.Queue(genericPlanSQL)
		if kind == streamQuery {
			// It runs as long as its client reads (the caller's ctx bounds it).
			batch.Queue("SELECT set_config('statement_timeout', '0', true)")
		}
		batch.Queue(sql, args...).Query(collect)
		batch.Queue("COMMIT")
	}
	return s.pool.SendBatch(ctx, batch).Close()
}

// statement renders window w's statement of the given kind with bind
// parameters and its day bounds as literals, and returns it with the
// parameters' values.
func statement(w Query, kind queryKind) (string, []any, error) {
	var args []any
	bind := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	p := placeholders{
		Org: bind(w.OrgID), Since: bind(w.Since), BeforeAt: bind(w.Before.OccurredAt), BeforeID: bind(w.Before.ID),
	}
	p.From, p.To = dayBounds(w)
	switch {
	case len(w.Actions) == 1:
		p.Action = bind(w.Actions[0])
	case len(w.Actions) > 1:
		p.Actions = bind(w.Actions)
	}
	if w.Actor != "" {
		p.Actor = bind(w.Actor)
	}
	if kind == pageQuery {
		p.Limit = bind(w.Limit)
	}
	if kind == countQuery {
		p.Bucket, p.Zone = bind(w.Bucket), bind(w.Zone)
	}
	sql, err := render(w, p, kind)
	return sql, args, err
}

// settingPlaceholders read the export's inputs back from the settings that
// exportSettings lists; exportPlaceholders adds the time bounds.
var settingPlaceholders = placeholders{
	Org:      "current_setting('auditlog.org_id')::uuid",
	BeforeID: "current_setting('auditlog.before_id')::uuid",
	Action:   "current_setting('auditlog.action')",
	Actions:  "current_setting('auditlog.actions')::text[]",
	Actor:    "current_setting('auditlog.actor')",
}

// exportPlaceholders are the placeholders of window w's COPY: the settings,
// and its time bounds as literals, which the planner prunes leaves on (a
// setting is only known once the statement runs, after the planner has
// locked every leaf).
func exportPlaceholders(w Query) placeholders {
	p := settingPlaceholders
	p.Since, p.BeforeAt = timeLiteral(w.Since), timeLiteral(w.Before.OccurredAt)
	return p
}

// timeLiteral writes t as a timestamptz literal, to the microsecond
// PostgreSQL keeps (truncated, as a bound parameter is): only digits and
// separators, from a time.Time, so no input can reach the SQL through it.
func timeLiteral(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02 15:04:05.000000") + "+00'::timestamptz"
}

// exportSettings are the inputs of window w's COPY, by setting name.
func exportSettings(w Query) map[string]string {
	var action string
	if len(w.Actions) == 1 {
		action = w.Actions[0]
	}
	return map[string]string{
		"auditlog.org_id":    w.OrgID,
		"auditlog.before_id": w.Before.ID,
		"auditlog.action":    action,
		"auditlog.actions":   textArray(w.Actions),
		"auditlog.actor":     w.Actor,
	}
}

// Statement is one COPY of an export and the settings (name, value) it
// reads its inputs from, which Export sets local to its transaction first:
// COPY takes no bind parameters, and this keeps every value but the time
// bounds out of its text.
type Statement struct {
	SQL      string
	Settings map[string]string
}

// ExportStatements returns the statements Export runs for q, one per
// window (windows), newest first; the first writes the header row. For
// comparing with psql.
func ExportStatements(q Query) ([]Statement, error) {
	var stmts []Statement
	for i, w := range q.windows() {
		sql, err := render(w, exportPlaceholders(w), exportQuery)
		if err != nil {
			return nil, err
		}
		header := ""
		if i == 0 {
			header = ", HEADER"
		}
		stmts = append(stmts, Statement{
			SQL:      "COPY (" + sql + ") TO STDOUT WITH (FORMAT csv" + header + ")",
			Settings: exportSettings(w),
		})
	}
	return stmts, nil
}

// Stream hands every event q selects, with its sentence and its seal, to
// each, newest first, as rows arrive: window by window (windows), each a
// query in a read-only transaction of its own, as Export's. It stops at the
// first error each returns.
func (s *Store) Stream(ctx context.Context, q Query, each func(ExportedEvent) error) error {
	for _, w := range q.windows() {
		err := s.read(ctx, []Query{w}, streamQuery, func(rows pgx.Rows) error {
			for rows.Next() {
				e, err := pgx.RowToStructByName[ExportedEvent](rows)
				if err != nil {
					return err
				}
				if err := each(e); err != nil {
					return err
				}
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("export events of org %s: %w", q.OrgID, err)
		}
	}
	return nil
}

// Export writes every event q selects to w as CSV with a header row (RFC
// 4180, cells neutralised against spreadsheet formulas): the event's
// columns, its sentence, then its seal's (seq, hash, prev_hash), streamed straight
// from PostgreSQL's COPY: memory use does not grow with the number of rows.
// Each window is a COPY in a read-only transaction of its own, so an export
// holds the locks of a few leaves at a time, and no snapshot from start to
// end. It returns the number of rows written. Cancelling ctx, or w failing,
// closes the connection, which stops the query.
func (s *Store) Export(ctx context.Context, q Query, w io.Writer) (int64, error) {
	stmts, err := ExportStatements(q)
	if err != nil {
		return 0, err
	}
	var rows int64
	for _, st := range stmts {
		n, err := s.copyTo(ctx, st, w)
		rows += n
		if err != nil {
			return rows, fmt.Errorf("export events of org %s: %w", q.OrgID, err)
		}
	}
	return rows, nil
}

// copyTo runs one statement of an export.
func (s *Store) copyTo(ctx context.Context, st Statement, w io.Writer) (int64, error) {
	names, values := settingArrays(st.Settings)
	// An export runs as long as its client reads (the caller's ctx bounds
	// it), past the statement_timeout of the API's other queries.
	names, values = append(names, "statement_timeout"), append(values, "0")
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err = tx.Exec(ctx, exportSettingsSQL, names, values); err != nil {
		return 0, fmt.Errorf("settings: %w", err)
	}
	tag, err := tx.Conn().PgConn().CopyTo(ctx, w, st.SQL)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

// settingArrays splits settings into names and values, the arguments of
// export_settings.
func settingArrays(settings map[string]string) (names, values []string) {
	names = slices.Sorted(maps.Keys(settings))
	values = make([]string, len(names))
	for i, name := range names {
		values[i] = settings[name]
	}
	return names, values
}

// textArray is the text form of a PostgreSQL text[].
func textArray(values []string) string {
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = `"` + quote.Replace(v) + `"`
	}
	return "{" + strings.Join(quoted, ",") + "}"
}

// placeholders are what events.sql puts where each input goes. From and To,
// when set, are literal bounds on occurred_at for the planner to prune on.
type placeholders struct {
	Org, Since, BeforeAt, BeforeID, Action, Actions, Actor, Limit, Bucket, Zone, Event string
	From, To                                                                           string
}

//go:embed events.sql
var eventsSQL string

var (
	eventsTemplate    = template.Must(template.New("events.sql").Parse(eventsSQL))
	exportSettingsSQL = mustExecute("export_settings", nil)
)

// queryKind is what a rendered query returns.
type queryKind int

const (
	pageQuery   queryKind = iota // a page of events, as JSON rows
	exportQuery                  // every event, as CSV cells
	streamQuery                  // every event, as JSON rows (the NDJSON export)
	countQuery                   // the number of events per bucket
	eventQuery                   // one event, by id
)

// shape is what events.sql needs to write the query for one kind of
// request.
type shape struct {
	Tiers    []string
	P        placeholders
	CSV      bool
	Sentence bool // an export's sentence column (the CSV's has it anyway)
	Nothing  bool // no action may match
	Lateral  bool // several actions, a page: one scan per action
	Actor    bool
	// Action is what action must equal, AnyAction the array it must be in.
	Action, AnyAction string
	// Below says the range ends strictly below Before's instant (Before.ID
	// is MinID), which lets the planner prune the leaf starting there.
	Below bool
	// KeyCol and KeyVal are the column between org_id and occurred_at in the
	// keyset condition, and its value: the index the scans follow.
	KeyCol, KeyVal string
}

// foldCase is SQL for the value of expr in lower case, lowered by the ICU
// root collation rather than the database's locale (a C-locale database
// lowers only A to Z): the expression of the actor index, which the actor
// filter must repeat for the index to serve it.
func foldCase(expr string) string {
	return "lower(" + expr + ` COLLATE "und-x-icu")`
}

// render writes the query of the given kind for q's shape with placeholders
// p.
func render(q Query, p placeholders, kind queryKind) (string, error) {
	if len(q.Tiers) == 0 {
		return "", fmt.Errorf("list events of org %s: no tier table to read", q.OrgID)
	}
	for _, t := range q.Tiers {
		if !slices.Contains(sqlcode.Tiers, t) {
			return "", fmt.Errorf("list events of org %s: unknown tier %q", q.OrgID, t)
		}
	}
	// A page reads as little as it can; an export and a count read every
	// matching event anyway.
	readsAll := kind != pageQuery
	sh := shape{Tiers: q.Tiers, P: p, CSV: kind == exportQuery, Sentence: kind == streamQuery, Nothing: q.matchesNothing(),
		Actor: q.Actor != "", Below: q.Before.ID == MinID}
	switch {
	case len(q.Actions) == 1:
		sh.Action = p.Action
	case len(q.Actions) > 1 && (readsAll || sh.Actor):
		// An actor's own index is the better guide than several actions'.
		sh.AnyAction = p.Actions
	case len(q.Actions) > 1:
		sh.Lateral, sh.Action = true, "wanted.name"
	}
	switch {
	case sh.Actor:
		sh.KeyCol, sh.KeyVal = foldCase("actor_email"), foldCase(p.Actor)
	case sh.Action != "":
		sh.KeyCol, sh.KeyVal = "action", sh.Action
	}
	name := map[queryKind]string{countQuery: "bucket_counts", eventQuery: "event"}[kind]
	if name == "" {
		name = "events"
	}
	var b strings.Builder
	if err := eventsTemplate.ExecuteTemplate(&b, name, sh); err != nil {
		return "", fmt.Errorf("render events query: %w", err)
	}
	return b.String(), nil
}

func mustExecute(name string, data any) string {
	var b bytes.Buffer
	if err := eventsTemplate.ExecuteTemplate(&b, name, data); err != nil {
		panic(err)
	}
	return b.String()
}

// nullString turns an empty string into SQL NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
