package sealer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/internal/chain"
)

// headRow is a (org, seq, hash) to sign.
type headRow struct {
	OrgID string `db:"org_id"`
	Seq   int64  `db:"seq"`
	Hash  []byte `db:"hash"`
}

// signHeads signs a day checkpoint of every head no checkpoint covers yet.
func (s *sealer) signHeads(ctx context.Context) error {
	for {
		rows, err := s.conn.Query(ctx, "SELECT org_id::text, seq, hash FROM audit.unsigned_heads(1000)")
		if err != nil {
			return fmt.Errorf("read unsigned heads: %w", err)
		}
		heads, err := pgx.CollectRows(rows, pgx.RowToStructByName[headRow])
		if err != nil {
			return fmt.Errorf("read unsigned heads: %w", err)
		}
		if len(heads) == 0 {
			return nil
		}
		if err := s.recordCheckpoints(ctx, s.conn, "day", heads); err != nil {
			return err
		}
		if len(heads) < 1000 {
			return nil
		}
	}
}

// prune removes seals of events retention removed, signing a removal
// checkpoint of the last one per org in the same transaction.
func (s *sealer) prune(ctx context.Context) error {
	for {
		var removed []headRow
		err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT org_id::text, seq, hash FROM audit.prune_seals($1)", s.cfg.PruneBatch)
			if err != nil {
				return err
			}
			removed, err = pgx.CollectRows(rows, pgx.RowToStructByName[headRow])
			if err != nil || len(removed) == 0 {
				return err
			}
			return s.recordCheckpoints(ctx, tx, "removal", removed)
		})
		if err != nil {
			return fmt.Errorf("prune seals: %w", err)
		}
		if len(removed) == 0 {
			return nil
		}
		s.cfg.Logger.Info("pruned seals of removed events", "orgs", len(removed))
	}
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// recordCheckpoints signs the heads as checkpoints of kind and stores them.
func (s *sealer) recordCheckpoints(ctx context.Context, db execer, kind string, heads []headRow) error {
	n := len(heads)
	orgs, seqs, hashes, times, sigs := make([]string, n), make([]int64, n), make([][]byte, n), make([]time.Time, n), make([][]byte, n)
	var keyID string
	for i, h := range heads {
		hash, err := chain.ParseHash(h.Hash)
		if err != nil {
			return err
		}
		c := chain.Checkpoint{Kind: kind, OrgID: h.OrgID, Seq: h.Seq, Hash: hash, SignedAt: s.cfg.Now()}
		c.Sign(s.cfg.Key)
		orgs[i], seqs[i], hashes[i], times[i], sigs[i], keyID = c.OrgID, c.Seq, h.Hash, c.SignedAt, c.Signature, c.KeyID
	}
	_, err := db.Exec(ctx, "SELECT audit.record_checkpoints($1, $2, $3, $4, $5, $6, $7)", kind, keyID, orgs, seqs, hashes, times, sigs)
	if err != nil {
		return fmt.Errorf("record %s checkpoints: %w", kind, err)
	}
	return nil
}
