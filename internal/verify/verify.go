// Package verify recomputes an org's hash chain from the database and
// checks it against the signed checkpoints (auditlog verify --org), and
// verifies saved feeds and exports offline (auditlog verify FILE).
package verify

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/store"
)

// Result is what verifying one org found.
type Result struct {
	OrgID string
	// First and Last are the seqs of the first and last seals read.
	First, Last int64
	// Verified links were recomputed; Given links (removed events) taken as
	// given; Checkpoints compared.
	Verified, Given int64
	Checkpoints     int
	// CoveredTo is the seq of the last link a checkpoint was compared with.
	CoveredTo int64
	// Unsealed counts the org's stored events without a seal in the
	// snapshot verified.
	Unsealed int64
	// Break is the first place the chain does not verify; nil when it does.
	Break *chain.Break
	// PastEnd is the checkpoint of the highest seq past Last (File only; nil
	// if none): a feed saved before it was signed, or its last lines cut off.
	PastEnd *chain.Checkpoint

	// Evidence missing for stored events (Org only). Verify looks for the
	// seals of the events it first finds without one (Rechecked of them, up
	// to PendingMax of the oldest) again in the snapshot it verifies, once the
	// sealer has read past their commits (SealerPassed) or SealerWait has
	// passed (how long Org was told to wait): Unresolved of them still have none, the first being
	// FirstUnresolved. Unchecked is how many more than PendingMax were
	// found, not looked for again. SealerAt is the sealer's position then ("" if it has
	// none, "0/0" while its first pass runs) and SealedAt when it last
	// recorded seals.
	Rechecked       int64
	SealerWait      time.Duration
	Unresolved      int64
	Unchecked       int64
	FirstUnresolved Pending
	SealerPassed    bool
	SealerAt        string
	SealedAt        *time.Time
	// Unsigned is when the first link after CoveredTo was sealed (zero
	// if none), and Now the database's time of the snapshot: a link sealed
	// more than SignWithin before is held by no checkpoint although the
	// sealer signs each head within a minute.
	Unsigned, Now time.Time
}

// Pending is a stored event found without a seal.
type Pending struct {
	OccurredAt time.Time
	ID         string
}

// Broken says whether what is stored contradicts itself: the chain breaks,
// or the sealer read past events that have no seal.
func (r Result) Broken() bool { return r.Break != nil || r.SealsRemoved() }

// SealsRemoved says whether events have no seal although the sealer read
// past their commits.
func (r Result) SealsRemoved() bool { return r.SealerPassed && r.Unresolved > 0 }

// SealerBehind says whether events have no seal and the sealer did not
// read past their commits within SealerWait: it is behind or not running,
// or their seals were removed, which cannot be told apart.
func (r Result) SealerBehind() bool { return !r.SealerPassed && r.Unresolved > 0 }

// Unproved says whether evidence is missing that a sealer behind or
// stopped would also leave missing: events without a seal it has not read
// past, or links no checkpoint holds long after they were sealed; or
// whether events without a seal were not looked for again (Unchecked).
func (r Result) Unproved() bool { return r.SealerBehind() || r.StaleUnsigned() || r.Unchecked > 0 }

// StaleUnsigned says whether links of a chain that does not break were
// left unsigned longer than SignWithin.
func (r Result) StaleUnsigned() bool {
	return r.Break == nil && !r.Unsigned.IsZero() && r.Now.Sub(r.Unsigned) > SignWithin
}

// DefaultSealerWait is how long Org waits, unless told otherwise, for the
// sealer to read past the commits of the events it finds without a seal:
// it reads a commit within a second or two of the WAL's flush.
const DefaultSealerWait = 10 * time.Second

// SignWithin is how long after its seal a link is held by a signed
// checkpoint at the latest: the sealer signs each new head within a minute
// (sealer.Config.CheckpointEvery, default 1m).
const SignWithin = 5 * time.Minute

// PendingMax bounds the events without a seal that Org looks for again:
// the oldest.
const PendingMax = 10000

// Querier is a connection or pool; it needs audit_reader.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Beginner is a pool or connection.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Org recomputes org orgID's chain from audit.sealed_events in seq order
// and checks it against every checkpoint signed for the org, with keys (by
// key id), or with the keys the database lists, each within its validity,
// when keys is nil: whoever can change the database can change those, so an
// auditor gives their own. It reads in one snapshot: seals pruned between
// reading the checkpoints and the seals would make the chain start where no
// removal checkpoint is known.
//
// Events stored without a seal are either not read by the sealer yet or
// lost their seals. So Org first notes the org's events without a seal and
// the WAL position past their commits, waits (up to wait) until the sealer
// has read that far, and then, in the snapshot it verifies, looks for their
// seals again.
func Org(ctx context.Context, db Beginner, orgID string, keys map[string]ed25519.PublicKey, wait time.Duration) (Result, error) {
	res := Result{OrgID: orgID, SealerWait: wait}
	pending, total, lsn, err := unsealed(ctx, db, orgID)
	if err != nil {
		return res, err
	}
	res.Unchecked = total - int64(len(pending))
	passed := true
	if len(pending) > 0 {
		if passed, err = waitForSealer(ctx, db, lsn, &res); err != nil {
			return res, err
		}
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, fmt.Errorf("verify org %s: %w", orgID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if res, err = org(ctx, tx, res, keys); err != nil {
		return res, err
	}
	res.Rechecked, res.SealerPassed = int64(len(pending)), passed
	if len(pending) > 0 {
		times, ids := pendingKeys(pending)
		err = tx.QueryRow(ctx, `
			SELECT count(*), coalesce(min(k.at), 'epoch'), coalesce((array_agg(k.id::text ORDER BY k.at, k.id))[1], '')
			FROM unnest($2::timestamptz[], $3::uuid[]) AS k(at, id)
			WHERE EXISTS (SELECT FROM audit.stored_events e WHERE e.org_id = $1 AND e.occurred_at = k.at AND e.id = k.id)
			  AND NOT EXISTS (SELECT FROM audit.seals s WHERE s.org_id = $1 AND s.occurred_at = k.at AND s.event_id = k.id)`,
			orgID, times, ids).Scan(&res.Unresolved, &res.FirstUnresolved.OccurredAt, &res.FirstUnresolved.ID)
		if err != nil {
			return res, fmt.Errorf("look for the seals of org %s's unsealed events again: %w", orgID, err)
		}
	}
	return res, nil
}

// unsealed reads the oldest of org orgID's stored events without a seal
// (up to PendingMax), how many there are, and a WAL position past their
// commits: where the server inserts WAL now, or, on a standby, where it
// replayed to.
func unsealed(ctx context.Context, db Beginner, orgID string) ([]Pending, int64, string, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, "", fmt.Errorf("verify org %s: %w", orgID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `
		SELECT occurred_at, id::text, count(*) OVER () FROM audit.unsealed_events WHERE org_id = $1 ORDER BY occurred_at, id LIMIT $2`, orgID, PendingMax)
	if err != nil {
		return nil, 0, "", fmt.Errorf("read unsealed events of org %s: %w", orgID, err)
	}
	var pending []Pending
	var p Pending
	var total int64
	_, err = pgx.ForEachRow(rows, []any{&p.OccurredAt, &p.ID, &total}, func() error {
		pending = append(pending, p)
		return nil
	})
	if err != nil {
		return nil, 0, "", fmt.Errorf("read unsealed events of org %s: %w", orgID, err)
	}
	if len(pending) == 0 {
		return nil, 0, "", nil
	}
	// Read after the snapshot: every commit it sees ends before.
	var lsn string
	err = tx.QueryRow(ctx, `
		SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text`).Scan(&lsn)
	if err != nil {
		return nil, 0, "", fmt.Errorf("read the WAL position: %w", err)
	}
	return pending, total, lsn, nil
}

// waitForSealer waits until the sealer has read past WAL position lsn:
// the sealer's progress (the end of the last transaction it sealed), or
// where its replication slot is confirmed to (it confirms a position only
// once the seals of what committed before are flushed; on a standby there
// is no slot). Neither counts while the slot's first pass over the stored
// events is not done (progress 0/0: the slot is confirmed from its start,
// past events the pass has not sealed yet), nor, on a primary, a progress
// without its slot (the sealer will start over with a first pass; a
// database restored from a dump keeps another server's positions). It
// notes in res where the sealer was ("0/0": in its first pass) and when it
// last sealed.
func waitForSealer(ctx context.Context, db Beginner, lsn string, res *Result) (bool, error) {
	deadline := time.Now().Add(res.SealerWait)
	for {
		var passed bool
		tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return false, fmt.Errorf("read sealer progress: %w", err)
		}
		err = tx.QueryRow(ctx, `
			SELECT coalesce(bool_or(p.at >= $1::pg_lsn), false), coalesce(max(p.at)::text, ''), max(p.sealed_at)
			FROM (SELECT CASE WHEN p.lsn = '0/0' THEN p.lsn ELSE greatest(p.lsn, s.confirmed_flush_lsn) END AS at, p.sealed_at
			      FROM audit.sealer_progress p
			      LEFT JOIN pg_replication_slots s ON s.slot_name = p.slot AND s.database = current_database()
			      WHERE pg_is_in_recovery() OR s.slot_name IS NOT NULL) p`,
			lsn).Scan(&passed, &res.SealerAt, &res.SealedAt)
		tx.Rollback(context.WithoutCancel(ctx))
		if err != nil {
			return false, fmt.Errorf("read sealer progress: %w", err)
		}
		if passed || time.Now().After(deadline) {
			return passed, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pendingKeys are the events' keys as parallel arrays.
func pendingKeys(ps []Pending) ([]time.Time, []string) {
	times, ids := make([]time.Time, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		times[i], ids[i] = p.OccurredAt, p.ID
	}
	return times, ids
}

func org(ctx context.Context, db Querier, res Result, trusted map[string]ed25519.PublicKey) (Result, error) {
	orgID := res.OrgID
	// Below the floor retention may have removed events; at or above it, an
	// event missing under its seal was deleted. No floor: the org is gone.
	var floor *time.Time
	err := db.QueryRow(ctx, "SELECT floor FROM audit.org_scope($1)", orgID).Scan(&floor)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("read retention of org %s: %w", orgID, err)
	}
	keys := trustedKeys(trusted)
	if keys == nil {
		if keys, err = Keys(ctx, db); err != nil {
			return res, err
		}
	}
	v := chain.NewVerifier(orgID, keys)
	cps, err := checkpoints(ctx, db, orgID)
	if err != nil {
		return res, err
	}
	for _, c := range cps {
		if err := v.AddCheckpoint(c); err != nil {
			res.Break = &chain.Break{Seq: c.Seq, Reason: err.Error()}
			return res, nil
		}
	}
	rows, err := db.Query(ctx, `
		SELECT seq, hash, prev_hash, event_id::text AS sealed_event_id, sealed_occurred_at, id, org_id, occurred_at, action, target_type, target_id,
		       actor_type, actor_id, actor_email, host(ip) AS ip, user_agent, request_id, metadata
		FROM audit.sealed_events WHERE org_id = $1 ORDER BY seq`, orgID)
	if err != nil {
		return res, fmt.Errorf("read seals of org %s: %w", orgID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var hash, prevHash []byte
		var sealedID string
		var sealedAt time.Time
		var id *string
		var e store.Event
		var at *time.Time
		var action, targetType, actorType *string
		if err := rows.Scan(&seq, &hash, &prevHash, &sealedID, &sealedAt, &id, &e.OrgID, &at, &action, &targetType, &e.TargetID,
			&actorType, &e.ActorID, &e.ActorEmail, &e.IP, &e.UserAgent, &e.RequestID, &e.Metadata); err != nil {
			return res, fmt.Errorf("read seals of org %s: %w", orgID, err)
		}
		h, err := chain.ParseHash(hash)
		if err != nil {
			return res, err
		}
		link := chain.Link{Seq: seq, Hash: h}
		// A seal recorded before migration 015 whose link before was gone
		// then, or by the sealer while it was being applied (the seal
		// before stored), has no prev_hash: nothing to compare, and its
		// hash is recomputed from the link before all the same.
		if prevHash != nil {
			p, err := chain.ParseHash(prevHash)
			if err != nil {
				return res, err
			}
			link.PrevHash = &p
		}
		if id != nil {
			e.ID, e.OccurredAt, e.Action, e.TargetType, e.ActorType = *id, *at, *action, *targetType, *actorType
			link.Event = &e
		} else if floor != nil && !sealedAt.Before(*floor) {
			res.Break = &chain.Break{Seq: seq, EventID: sealedID, Reason: fmt.Sprintf(
				"the event was deleted: it occurred at %s, and the org's retention keeps events since %s",
				sealedAt.UTC().Format(chain.TimeLayout), floor.UTC().Format(chain.TimeLayout))}
			break
		}
		if err := v.Add(link); err != nil {
			var b *chain.Break
			if errors.As(err, &b) {
				if b.EventID == "" {
					b.EventID = sealedID
				}
				res.Break = b
				break
			}
			return res, err
		}
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read seals of org %s: %w", orgID, err)
	}
	rows.Close()
	if res.Break == nil {
		if err := v.FinishHead(); err != nil {
			res.Break = err.(*chain.Break)
		}
	}
	res.First, res.Last, res.Verified, res.Given, res.Checkpoints, res.CoveredTo = v.First(), v.Last(), v.Verified, v.Given, v.Checked, v.CoveredTo
	// The org's head, which the sealer moves with each seal and keeps when
	// it prunes: unsigned, but a rewound chain must rewind it too. Then when
	// the first link no checkpoint holds was sealed.
	var head int64
	var unsigned *time.Time
	err = db.QueryRow(ctx, `
		SELECT coalesce((SELECT seq FROM audit.seal_heads WHERE org_id = $1), 0),
		       (SELECT min(sealed_at) FROM audit.seals WHERE org_id = $1 AND seq > $2), now(),
		       (SELECT count(*) FROM audit.unsealed_events WHERE org_id = $1)`,
		orgID, res.CoveredTo).Scan(&head, &unsigned, &res.Now, &res.Unsealed)
	if err != nil {
		return res, fmt.Errorf("read the head of org %s: %w", orgID, err)
	}
	if unsigned != nil {
		res.Unsigned = *unsigned
	}
	if end := v.End(); res.Break == nil && head > end {
		res.Break = &chain.Break{Seq: end + 1, Reason: fmt.Sprintf("seals %d to %d are missing: %s, but the org's head (audit.seal_heads) is seq %d", end+1, head, v.EndSays(), head)}
	} else if res.Break == nil && head < end {
		says := fmt.Sprintf("is seq %d", head)
		if head == 0 {
			says = "is missing"
		}
		res.Break = &chain.Break{Seq: head + 1, Reason: fmt.Sprintf("the chain goes on to seq %d, but the org's head (audit.seal_heads) %s", end, says)}
	}
	return res, nil
}

// trustedKeys are keys an auditor gives: valid whenever they signed.
func trustedKeys(keys map[string]ed25519.PublicKey) map[string]chain.Key {
	if keys == nil {
		return nil
	}
	out := make(map[string]chain.Key, len(keys))
	for id, pub := range keys {
		out[id] = chain.Key{Public: pub}
	}
	return out
}

// Keys reads every public key that signed checkpoints, by key id, with the
// time each was the signing key.
func Keys(ctx context.Context, db Querier) (map[string]chain.Key, error) {
	rows, err := db.Query(ctx, "SELECT key_id, public_key, valid_from, valid_until FROM audit.seal_keys")
	if err != nil {
		return nil, fmt.Errorf("read seal keys: %w", err)
	}
	keys := map[string]chain.Key{}
	var id string
	var pub []byte
	var from time.Time
	var until *time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &pub, &from, &until}, func() error {
		k := chain.Key{Public: ed25519.PublicKey(pub), ValidFrom: from}
		if until != nil {
			k.ValidUntil = *until
		}
		keys[id] = k
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read seal keys: %w", err)
	}
	return keys, nil
}

func checkpoints(ctx context.Context, db Querier, orgID string) ([]chain.Checkpoint, error) {
	rows, err := db.Query(ctx, `
		SELECT kind, org_id::text, seq, hash, signed_at, key_id, signature
		FROM audit.checkpoints WHERE org_id = $1 ORDER BY seq, signed_at`, orgID)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of org %s: %w", orgID, err)
	}
	var out []chain.Checkpoint
	var c chain.Checkpoint
	var hash []byte
	_, err = pgx.ForEachRow(rows, []any{&c.Kind, &c.OrgID, &c.Seq, &hash, &c.SignedAt, &c.KeyID, &c.Signature}, func() error {
		h, err := chain.ParseHash(hash)
		if err != nil {
			return err
		}
		c.Hash = h
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of org %s: %w", orgID, err)
	}
	return out, nil
}
