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
)

// Store runs the read side's queries.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool, which should connect as a role holding
// audit_reader (it needs nothing more).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// ErrUnauthenticated means the token is unknown, expired or revoked.
var ErrUnauthenticated = errors.New("token unknown, expired or revoked")

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
// ErrUnauthenticated for a token that is unknown, expired or revoked.
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte, orgID string, at *time.Time) (Principal, error) {
	var p Principal
	var role *string
	err := s.pool.QueryRow(ctx, "SELECT pat_id, user_id, role FROM audit.authenticate($1, $2, $3)",
		tokenHash, nullString(orgID), at).Scan(&p.PATID, &p.UserID, &role)
	if errors.Is(err, pgx.ErrNoRows) {
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

// maxWindowDays is the most UTC days one statement of an export covers.
const maxWindowDays = 8

// windows cuts q's range into the ranges an export's statements read,
// newest first: from the UTC day of Now (or of Before, if earlier) up to
// Before, then whole UTC days below, 1, 2, 4 and then maxWindowDays at a
// time, down to Since. Each is a COPY in a transaction of its own, planned
// with its bounds known: PostgreSQL then opens and locks only the leaves of
// that window (and their indexes), where a statement planned without them
// locks every leaf of the tier table for as long as it runs, which for an
// export is as long as its client reads.
func (q Query) windows() []Query {
	if q.matchesNothing() {
		return []Query{q}
	}
	top := q.Before.OccurredAt
	if !q.Now.IsZero() && q.Now.Before(top) {
		top = q.Now
	}
	y, m, d := top.UTC().Date()
	lo := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	var ws []Query
	for span := 1; ; span = min(2*span, maxWindowDays) {
		w := q
		if !lo.After(q.Since) {
			return append(ws, w)
		}
		w.Since = lo
		ws = append(ws, w)
		q.Before = Position{OccurredAt: lo, ID: MinID}
		lo = lo.AddDate(0, 0, -span)
	}
}

// parts cuts a page's or a count's range into its statements: a range of
// customPlanDays or less is one; a longer one is two, the first window
// (today's leaf and any ahead of it, where most pages fill up) and the rest.
func (q Query) parts() []Query {
	ws := q.windows()
	if len(ws) == 1 || q.span() <= customPlanDays*24*time.Hour {
		return []Query{q}
	}
	rest := q
	rest.Before = Position{OccurredAt: ws[0].Since, ID: MinID}
	return []Query{ws[0], rest}
}

// span is how long q's range is, up to Now.
func (q Query) span() time.Duration {
	end := q.Before.OccurredAt
	if !q.Now.IsZero() && q.Now.Before(end) {
		end = q.Now
	}
	return end.Sub(q.Since)
}

// customPlanDays is the longest range a page or count statement is planned
// for its values: planning costs about 0.1 ms a leaf, so a longer one runs
// on its prepared statement's generic plan, which prunes leaves only as it
// starts and so locks every leaf of the tier table for the few
// milliseconds it runs (docs/dba.md sizes max_locks_per_transaction for
// it).
const customPlanDays = 8

// planSQL sets, for w's statement alone, the plan it runs on: one made for
// its values, whose partition pruning at plan time keeps it from opening
// and locking leaves outside its range, unless its range is longer than
// customPlanDays. Either way a prepared statement never drifts from one to
// the other, as PostgreSQL's default would after five runs.
func planSQL(w Query) string {
	if w.span() > customPlanDays*24*time.Hour {
		return "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"
	}
	return "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"
}

// Page hands up to q.Limit events to each, newest first, one at a time as
// they arrive, and stops reading when each returns false: the caller decides
// how much to hold. It reads the first part alone, and the rest of the
// range only if the page is not full.
func (s *Store) Page(ctx context.Context, q Query, each func(Event) bool) error {
	if q.matchesNothing() {
		return nil
	}
	want, stopped := q.Limit, false
	for _, part := range q.parts() {
		if want == 0 || stopped {
			break
		}
		part.Limit = want
		err := s.read(ctx, []Query{part}, pageQuery, func(rows pgx.Rows) error {
			for want > 0 && !stopped && rows.Next() {
				e, err := pgx.RowToStructByName[Event](rows)
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
// buckets that have any, by start. A bucket cut by two statements (parts
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
	err := s.read(ctx, q.parts(), countQuery, func(rows pgx.Rows) error {
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

// Event returns the event of org q.OrgID with this id, if it is within
// [q.Since, q.Before.OccurredAt] (give both its time, when known, to find it
// with one index probe); ErrNoSuchEvent if not.
func (s *Store) Event(ctx context.Context, q Query, id string) (Event, error) {
	sql, err := render(q, placeholders{Org: "$1", Event: "$2", Since: "$3", BeforeAt: "$4"}, eventQuery)
	if err != nil {
		return Event{}, err
	}
	rows, _ := s.pool.Query(ctx, sql, q.OrgID, id, q.Since, q.Before.OccurredAt)
	e, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Event])
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, ErrNoSuchEvent
	}
	if err != nil {
		return Event{}, fmt.Errorf("read event %s of org %s: %w", id, q.OrgID, err)
	}
	return e, nil
}

// read runs the statements of parts ws of the given kind, with bind
// parameters, in one round trip, and hands each one's rows to collect, in
// order. Each runs in a transaction of its own, so its locks go before the
// next one starts, on the plan planSQL picks.
func (s *Store) read(ctx context.Context, ws []Query, kind queryKind, collect func(pgx.Rows) error) error {
	batch := &pgx.Batch{}
	for _, w := range ws {
		sql, args, err := statement(w, kind)
		if err != nil {
			return err
		}
		batch.Queue("BEGIN READ ONLY")
		batch.Queue(planSQL(w))
		batch.Queue(sql, args...).Query(collect)
		batch.Queue("COMMIT")
	}
	return s.pool.SendBatch(ctx, batch).Close()
}

// statement renders window w's statement of the given kind with bind
// parameters, and returns it with their values.
func statement(w Query, kind queryKind) (string, []any, error) {
	var args []any
	bind := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	p := placeholders{
		Org: bind(w.OrgID), Since: bind(w.Since), BeforeAt: bind(w.Before.OccurredAt), BeforeID: bind(w.Before.ID),
	}
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

// Export writes every event q selects to w as CSV with a header row (RFC
// 4180, cells neutralised against spreadsheet formulas), streamed straight
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

// placeholders are what events.sql puts where each input goes.
type placeholders struct {
	Org, Since, BeforeAt, BeforeID, Action, Actions, Actor, Limit, Bucket, Zone, Event string
}

//go:embed events.sql
var eventsSQL string

var (
	eventsTemplate    = template.Must(template.New("events.sql").Parse(eventsSQL))
	exportSettingsSQL = mustExecute("export_settings", nil)
)

// tiers are the tier tables a query may name.
var tiers = []string{"free", "team", "enterprise"}

// queryKind is what a rendered query returns.
type queryKind int

const (
	pageQuery   queryKind = iota // a page of events, as JSON rows
	exportQuery                  // every event, as CSV cells
	countQuery                   // the number of events per bucket
	eventQuery                   // one event, by id
)

// shape is what events.sql needs to write the query for one kind of
// request.
type shape struct {
	Tiers   []string
	P       placeholders
	CSV     bool
	Nothing bool // no action may match
	Lateral bool // several actions, a page: one scan per action
	Actor   bool
	// Action is what action must equal, AnyAction the array it must be in.
	Action, AnyAction string
	// Below says the range ends strictly below Before's instant (Before.ID
	// is MinID), which lets the planner prune the leaf starting there.
	Below bool
	// KeyCol and KeyVal are the column between org_id and occurred_at in the
	// keyset condition, and its value: the index the scans follow.
	KeyCol, KeyVal string
}

// render writes the query of the given kind for q's shape with placeholders
// p.
func render(q Query, p placeholders, kind queryKind) (string, error) {
	if len(q.Tiers) == 0 {
		return "", fmt.Errorf("list events of org %s: no tier table to read", q.OrgID)
	}
	for _, t := range q.Tiers {
		if !slices.Contains(tiers, t) {
			return "", fmt.Errorf("list events of org %s: unknown tier %q", q.OrgID, t)
		}
	}
	// A page reads as little as it can; an export and a count read every
	// matching event anyway.
	readsAll := kind != pageQuery
	sh := shape{Tiers: q.Tiers, P: p, CSV: kind == exportQuery, Nothing: q.matchesNothing(), Actor: q.Actor != "",
		Below: q.Before.ID == MinID}
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
		sh.KeyCol, sh.KeyVal = "lower(actor_email)", "lower("+p.Actor+")"
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
