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
	// Unsealed counts the org's stored events without a seal.
	Unsealed int64
	// Break is the first place the chain does not verify; nil when it does.
	Break *chain.Break
}

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
func Org(ctx context.Context, db Beginner, orgID string, keys map[string]ed25519.PublicKey) (Result, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Result{OrgID: orgID}, fmt.Errorf("verify org %s: %w", orgID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return org(ctx, tx, orgID, keys)
}

func org(ctx context.Context, db Querier, orgID string, trusted map[string]ed25519.PublicKey) (Result, error) {
	res := Result{OrgID: orgID}
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
		SELECT seq, hash, event_id::text AS sealed_event_id, sealed_occurred_at, id, org_id, occurred_at, action, target_type, target_id,
		       actor_type, actor_id, actor_email, host(ip) AS ip, user_agent, request_id, metadata
		FROM audit.sealed_events WHERE org_id = $1 ORDER BY seq`, orgID)
	if err != nil {
		return res, fmt.Errorf("read seals of org %s: %w", orgID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var hash []byte
		var sealedID string
		var sealedAt time.Time
		var id *string
		var e store.Event
		var at *time.Time
		var action, targetType, actorType *string
		if err := rows.Scan(&seq, &hash, &sealedID, &sealedAt, &id, &e.OrgID, &at, &action, &targetType, &e.TargetID,
			&actorType, &e.ActorID, &e.ActorEmail, &e.IP, &e.UserAgent, &e.RequestID, &e.Metadata); err != nil {
			return res, fmt.Errorf("read seals of org %s: %w", orgID, err)
		}
		h, err := chain.ParseHash(hash)
		if err != nil {
			return res, err
		}
		link := chain.Link{Seq: seq, Hash: h}
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
	err = db.QueryRow(ctx, "SELECT count(*) FROM audit.unsealed_events WHERE org_id = $1", orgID).Scan(&res.Unsealed)
	if err != nil {
		return res, fmt.Errorf("count unsealed events of org %s: %w", orgID, err)
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
