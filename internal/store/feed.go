package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	sqlcode "github.com/auditlog/auditlog/sql"
)

// FeedSpan bounds the occurred_at span of the seals one feed page reads, so
// that its events are read from the leaves of at most a week (locks and
// plan time stay small however long the org's history).
const FeedSpan = 7 * 24 * time.Hour

// The sealer reads a transaction from the WAL once its commit is flushed,
// which can be before the commit is visible to other sessions (for a
// moment; under synchronous replication, until the standby confirms), so a
// page can see a seal before its event. A seal keeps its event's
// transaction id: while the page's snapshot still counts that transaction
// as running, the event is pending and the page ends before it, to be read
// again; once the transaction has ended, an event not seen is gone (removed
// by retention, or by hand) and skipped. A seal without the id (its event
// was sealed from a snapshot, or before seals kept ids) is pending for
// feedSettle after it was sealed.
const feedSettle = 10 * time.Second

// feedScan is how many seals a filtered feed page reads at most: a page
// may then hold no event yet move on.
const feedScan = 1000

// feedColumns are an event's columns as a page shows them.
var feedColumns = mustExecute("page_columns", nil)

// FeedQuery selects a page of an org's sealed events in seq order.
type FeedQuery struct {
	OrgID string
	// Tiers and Floor are the org's read scope (Scope): an event outside
	// it is not shown, as in the listing.
	Tiers []string
	Floor time.Time
	// After is the seq the page starts after.
	After int64
	// Limit is the most events the page holds.
	Limit int
	// Actions, if not nil, keeps only events of these actions.
	Actions []string
	// Actor, if not empty, keeps only events of the actor with this email,
	// in any case.
	Actor string
}

// FeedEvent is an event with its seal.
type FeedEvent struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"` // hex
	Event
}

// FeedPage is one page of the feed.
type FeedPage struct {
	Events []FeedEvent
	// Next is the seq to continue after: the last seal the page read,
	// shown or not (filtered out, or removed by retention).
	Next int64
	// Head is the org's last seq when the page was read; First its first
	// seq still stored (0: none).
	Head, First int64
}

type feedSeal struct {
	seq        int64
	hash       []byte
	occurredAt time.Time
	eventID    string
	pending    bool // its event may not be visible yet
}

// Feed reads a page of q.OrgID's events after seq q.After, in seq order,
// from one snapshot.
func (s *Store) Feed(ctx context.Context, q FeedQuery) (FeedPage, error) {
	page := FeedPage{Next: q.After, Events: []FeedEvent{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT coalesce((SELECT seq FROM audit.seal_heads WHERE org_id = $1), 0),
			       coalesce((SELECT min(seq) FROM audit.seals WHERE org_id = $1), 0)`, q.OrgID).Scan(&page.Head, &page.First)
		if err != nil || q.After >= page.Head {
			return err
		}
		seals, err := readSeals(ctx, tx, q)
		if err != nil {
			return err
		}
		if len(seals) == 0 {
			// Below the head and no seal left: the sealer pruned them all
			// (retention removed their events); the head stays.
			page.Next = page.Head
			return nil
		}
		events, err := sealedEvents(ctx, tx, q, seals)
		if err != nil {
			return err
		}
		unseen, err := unseenEvents(ctx, tx, q, seals, events)
		if err != nil {
			return err
		}
		for _, sl := range seals {
			if unseen[sl.eventID] {
				break // not visible yet: read again from here
			}
			page.Next = sl.seq
			if e, ok := events[sl.eventID]; ok && e.OccurredAt.Equal(sl.occurredAt) {
				page.Events = append(page.Events, FeedEvent{Seq: sl.seq, Hash: fmt.Sprintf("%x", sl.hash), Event: e})
				if len(page.Events) == q.Limit {
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return FeedPage{}, fmt.Errorf("read the feed of org %s: %w", q.OrgID, err)
	}
	return page, nil
}

// readSeals reads the seals after q.After in seq order: as many as the page
// may show (more when filtered), cut where their events span more than
// FeedSpan.
func readSeals(ctx context.Context, tx pgx.Tx, q FeedQuery) ([]feedSeal, error) {
	n := q.Limit
	if q.Actions != nil || q.Actor != "" {
		n = max(n, feedScan)
	}
	rows, err := tx.Query(ctx, `
		SELECT seq, hash, occurred_at, event_id::text,
		       CASE WHEN xid IS NULL THEN sealed_at > now() - $4::interval
		            ELSE NOT pg_visible_in_snapshot(xid, pg_current_snapshot()) END
		FROM audit.seals
		WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, q.OrgID, q.After, n, feedSettle)
	if err != nil {
		return nil, err
	}
	var seals []feedSeal
	var sl feedSeal
	var lo, hi time.Time
	_, err = pgx.ForEachRow(rows, []any{&sl.seq, &sl.hash, &sl.occurredAt, &sl.eventID, &sl.pending}, func() error {
		if len(seals) == 0 {
			lo, hi = sl.occurredAt, sl.occurredAt
		}
		lo, hi = minTime(lo, sl.occurredAt), maxTime(hi, sl.occurredAt)
		if hi.Sub(lo) > FeedSpan {
			rows.Close() // the page ends before this seal
			return nil
		}
		seals = append(seals, sl)
		return nil
	})
	return seals, err
}

// sealedEvents reads the events of seals that the query shows, by id.
func sealedEvents(ctx context.Context, tx pgx.Tx, q FeedQuery, seals []feedSeal) (map[string]Event, error) {
	ids := make([]string, len(seals))
	lo, hi := seals[0].occurredAt, seals[0].occurredAt
	for i, sl := range seals {
		ids[i] = sl.eventID
		lo, hi = minTime(lo, sl.occurredAt), maxTime(hi, sl.occurredAt)
	}
	lo = maxTime(lo, q.Floor)
	if lo.After(hi) {
		return nil, nil
	}
	// A custom plan: with the bounds known when planning, PostgreSQL opens
	// and locks only the leaves of [lo, hi].
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_custom_plan"); err != nil {
		return nil, err
	}
	args := []any{q.OrgID, lo, hi, ids}
	var where strings.Builder
	if q.Actions != nil {
		args = append(args, q.Actions)
		fmt.Fprintf(&where, " AND action = ANY($%d)", len(args))
	}
	if q.Actor != "" {
		args = append(args, q.Actor)
		fmt.Fprintf(&where, " AND %s = %s", foldCase("actor_email"), foldCase(fmt.Sprintf("$%d", len(args))))
	}
	var sql strings.Builder
	for i, tier := range q.Tiers {
		if !slices.Contains(sqlcode.Tiers, tier) {
			return nil, fmt.Errorf("unknown tier %q", tier)
		}
		if i > 0 {
			sql.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&sql, `SELECT %s FROM audit.events_%s
			WHERE org_id = $1 AND occurred_at >= $2 AND occurred_at <= $3 AND id = ANY($4::uuid[])%s`,
			feedColumns, tier, where.String())
	}
	rows, err := tx.Query(ctx, sql.String(), args...)
	if err != nil {
		return nil, err
	}
	events, err := pgx.CollectRows(rows, pgx.RowToStructByName[Event])
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	return byID, nil
}

// unseenEvents are the events of pending seals in the read scope that the
// snapshot does not see at all (not merely filtered out of shown): not
// visible yet (feedSettle).
func unseenEvents(ctx context.Context, tx pgx.Tx, q FeedQuery, seals []feedSeal, shown map[string]Event) (map[string]bool, error) {
	var missing []feedSeal
	for _, sl := range seals {
		if _, ok := shown[sl.eventID]; !ok && sl.pending && !sl.occurredAt.Before(q.Floor) {
			missing = append(missing, sl)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	all := q
	all.Actions, all.Actor = nil, ""
	seen := shown
	if q.Actions != nil || q.Actor != "" {
		var err error
		if seen, err = sealedEvents(ctx, tx, all, missing); err != nil {
			return nil, err
		}
	}
	unseen := map[string]bool{}
	for _, sl := range missing {
		if _, ok := seen[sl.eventID]; !ok {
			unseen[sl.eventID] = true
		}
	}
	return unseen, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// SealKey is a public key that signs checkpoints.
type SealKey struct {
	KeyID      string     `json:"key_id" db:"key_id"`
	PublicKey  string     `json:"public_key" db:"public_key"` // hex
	ValidFrom  time.Time  `json:"valid_from" db:"valid_from"`
	ValidUntil *time.Time `json:"valid_until" db:"valid_until"`
}

// SealKeys lists the keys that signed or sign checkpoints, oldest first.
func (s *Store) SealKeys(ctx context.Context) ([]SealKey, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key_id, encode(public_key, 'hex') AS public_key, valid_from, valid_until
		FROM audit.seal_keys ORDER BY valid_from, key_id`)
	if err != nil {
		return nil, fmt.Errorf("read seal keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByName[SealKey])
	if err != nil {
		return nil, fmt.Errorf("read seal keys: %w", err)
	}
	return keys, nil
}

// Checkpoint is a signed checkpoint as the API shows it (docs/feed.md).
type Checkpoint struct {
	Kind      string    `json:"kind" db:"kind"`
	OrgID     string    `json:"org_id" db:"org_id"`
	Seq       int64     `json:"seq" db:"seq"`
	Hash      string    `json:"hash" db:"hash"` // hex
	SignedAt  time.Time `json:"signed_at" db:"signed_at"`
	KeyID     string    `json:"key_id" db:"key_id"`
	Signature string    `json:"signature" db:"signature"` // hex
}

// Checkpoints lists org orgID's checkpoints that still matter, in seq
// order: its last removal checkpoint (where the stored chain starts) and
// those after it.
func (s *Store) Checkpoints(ctx context.Context, orgID string) ([]Checkpoint, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT kind, org_id::text AS org_id, seq, encode(hash, 'hex') AS hash, signed_at, key_id,
		       encode(signature, 'hex') AS signature
		FROM audit.checkpoints
		WHERE org_id = $1
		  AND seq >= coalesce((SELECT max(seq) FROM audit.checkpoints WHERE org_id = $1 AND kind = 'removal'), 0)
		ORDER BY seq, signed_at`, orgID)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of org %s: %w", orgID, err)
	}
	cps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Checkpoint])
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of org %s: %w", orgID, err)
	}
	return cps, nil
}

// SealerStatus is how far the sealer of this database is.
type SealerStatus struct {
	// Slot is false when no sealer ever ran here.
	Slot bool
	// Active says a sealer is reading the slot now.
	Active bool
	// BehindBytes is the WAL written since the position the sealer last
	// confirmed (it confirms every 10 s, and when idle).
	BehindBytes int64
	// LastSealed is when the sealer last recorded seals.
	LastSealed time.Time
}

// SealerStatus reads the sealer's replication slot and progress.
func (s *Store) SealerStatus(ctx context.Context) (SealerStatus, error) {
	var st SealerStatus
	var behind *int64
	var last *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT r.active,
		       CASE WHEN NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_lsn(), r.confirmed_flush_lsn)::bigint END,
		       p.sealed_at
		FROM audit.sealer_progress p
		JOIN pg_replication_slots r ON r.slot_name = p.slot AND r.database = current_database()
		ORDER BY r.active DESC, p.sealed_at DESC LIMIT 1`).Scan(&st.Active, &behind, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read the sealer's status: %w", err)
	}
	st.Slot = true
	if behind != nil {
		st.BehindBytes = *behind
	}
	if last != nil {
		st.LastSealed = *last
	}
	return st, nil
}

// CheckpointCovering returns the checkpoint of org orgID that best covers
// seqs first to last (an export's): the latest one within them, else the
// first one after them; nil if there is none, or no seq (first 0).
func (s *Store) CheckpointCovering(ctx context.Context, orgID string, first, last int64) (*Checkpoint, error) {
	if first == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT kind, org_id::text AS org_id, seq, encode(hash, 'hex') AS hash, signed_at, key_id,
		       encode(signature, 'hex') AS signature
		FROM audit.checkpoints
		WHERE org_id = $1 AND seq >= $2
		ORDER BY seq > $3, CASE WHEN seq <= $3 THEN -seq ELSE seq END, signed_at DESC
		LIMIT 1`, orgID, first, last)
	if err != nil {
		return nil, fmt.Errorf("read the checkpoint covering seq %d to %d of org %s: %w", first, last, orgID, err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Checkpoint])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the checkpoint covering seq %d to %d of org %s: %w", first, last, orgID, err)
	}
	return c, nil
}

// Manifest ends an export (docs/api.md): what it holds and the proof of
// it. The NDJSON export's last line is {"manifest": ...}; the CSV export
// sends it as the Audit-Manifest trailer.
type Manifest struct {
	OrgID string `json:"org_id"`
	// Rows counts the events exported; Sealed those with a seq.
	Rows   int64 `json:"rows"`
	Sealed int64 `json:"sealed"`
	// FirstSeq and LastSeq are the lowest and highest seq exported (0: none
	// sealed); HeadHash is the hash at LastSeq, the head of the chain the
	// export holds.
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	HeadHash string `json:"head_hash"`
	// BodySHA256 is the SHA-256 of every byte before the manifest, in hex.
	BodySHA256 string `json:"body_sha256"`
	// Checkpoint is the signed checkpoint that best covers the seqs
	// (CheckpointCovering); nil if none.
	Checkpoint *Checkpoint `json:"checkpoint"`
}
