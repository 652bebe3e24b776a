// Package sealer gives every committed audit event, per org, a gap-free
// sequence number in commit order and a chain hash (docs/feed.md). It reads
// the tier tables' inserts from the write-ahead log by logical decoding
// (the publication auditlog_events, the pgoutput plugin, one replication
// slot per database), so writers never wait for it; it signs per-org
// checkpoints with an Ed25519 key, and prunes the seals of events that
// retention removed.
//
// One sealer is active per database (an advisory lock); others wait as hot
// standbys. Progress is recorded with each batch of seals in one
// transaction, so a sealer killed at any instant resumes with nothing
// skipped, doubled or renumbered.
package sealer

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/database"
)

// Config configures Run.
type Config struct {
	// DatabaseURL connects as a login role holding audit_sealer and the
	// REPLICATION attribute.
	DatabaseURL string
	// Key signs checkpoints.
	Key ed25519.PrivateKey
	// Slot is the replication slot's name. Default: auditlog_seal_<database>.
	Slot string
	// BatchSize is how many events at most one transaction of seals holds.
	// Default 5000.
	BatchSize int
	// BatchDelay is how long committed events may wait for more to share
	// their batch. Default 20ms.
	BatchDelay time.Duration
	// CheckpointEvery is how often heads are signed. Default 1m.
	CheckpointEvery time.Duration
	// PruneEvery is how often seals of removed events are pruned. Default 10m.
	PruneEvery time.Duration
	// PruneBatch bounds the seals one pruning transaction removes. Default 10000.
	PruneBatch int
	// RetryDelay is the wait before reconnecting after an error, and between
	// tries of the lock while standing by. Default 2s.
	RetryDelay time.Duration
	// Logger receives what the sealer does. Default: discard.
	Logger *slog.Logger
	// Now is the clock checkpoints are signed with. Default: time.Now.
	Now func() time.Time
}

func (c *Config) defaults() error {
	if c.Key == nil {
		return errors.New("sealer: no signing key")
	}
	if c.Slot == "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil {
			return fmt.Errorf("sealer: database URL: %w", err)
		}
		c.Slot = SlotName(strings.TrimPrefix(u.Path, "/"))
	}
	if !slotPattern.MatchString(c.Slot) {
		return fmt.Errorf("sealer: slot name %q: use 1 to 63 lowercase letters, digits and underscores", c.Slot)
	}
	c.BatchSize = cmp.Or(c.BatchSize, 5000)
	c.BatchDelay = cmp.Or(c.BatchDelay, 20*time.Millisecond)
	c.CheckpointEvery = cmp.Or(c.CheckpointEvery, time.Minute)
	c.PruneEvery = cmp.Or(c.PruneEvery, 10*time.Minute)
	c.PruneBatch = cmp.Or(c.PruneBatch, 10000)
	c.RetryDelay = cmp.Or(c.RetryDelay, 2*time.Second)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BatchSize < 1 || c.PruneBatch < 1 {
		return errors.New("sealer: batch sizes must be positive")
	}
	return nil
}

var slotPattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// SlotName is the default slot of database db.
func SlotName(db string) string {
	s := "auditlog_seal_" + regexp.MustCompile(`[^a-z0-9_]`).ReplaceAllString(strings.ToLower(db), "_")
	return s[:min(len(s), 63)]
}

// fatalError is a misconfiguration that retrying cannot fix.
type fatalError struct{ error }

// Run seals until ctx ends, reconnecting after errors. It returns an error
// only for a misconfiguration (a standby, wal_level not logical, a role
// without the privileges it needs).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	for {
		err := runOnce(ctx, &cfg)
		if ctx.Err() != nil {
			return nil
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			return fatal.error
		}
		cfg.Logger.Error("sealer stopped; retrying", "err", err, "in", cfg.RetryDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.RetryDelay):
		}
	}
}

// Check connects to the database at url and says whether a sealer could
// run there: a primary with wal_level logical, and a role with the
// REPLICATION attribute and membership of audit_sealer.
func Check(ctx context.Context, url string) error {
	conn, err := database.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := checkServer(ctx, conn); err != nil {
		var fatal fatalError
		if errors.As(err, &fatal) {
			return fatal.error
		}
		return err
	}
	return nil
}

func runOnce(ctx context.Context, cfg *Config) error {
	conn, err := database.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := checkServer(ctx, conn); err != nil {
		return err
	}
	if err := waitForLock(ctx, conn, cfg); err != nil {
		return err
	}
	// The sealer's commits need not wait for their WAL flush: a crash of
	// the server may lose its last batches, but seals and progress
	// together, and the slot is confirmed only up to what is flushed
	// (sealer.confirm), so they are sealed again, to the same seqs.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return fmt.Errorf("set synchronous_commit: %w", err)
	}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	if _, err := conn.Exec(ctx, "SELECT audit.register_seal_key($1, $2)", chain.KeyID(pub), []byte(pub)); err != nil {
		return fmt.Errorf("register seal key: %w", err)
	}
	s := &sealer{cfg: cfg, conn: conn, heads: map[string]head{}}
	return s.run(ctx)
}

// checkServer refuses what a retry cannot fix.
func checkServer(ctx context.Context, conn *pgx.Conn) error {
	if err := database.CheckPrimary(ctx, conn, "sealer"); errors.Is(err, database.ErrStandby) {
		return fatalError{err}
	} else if err != nil {
		return err
	}
	var replication, sealer bool
	var walLevel string
	err := conn.QueryRow(ctx, `
		SELECT current_setting('wal_level'),
		       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
		       pg_has_role(current_user, 'audit_sealer', 'MEMBER')`).Scan(&walLevel, &replication, &sealer)
	switch {
	case err != nil:
		return fmt.Errorf("check server: %w", err)
	case walLevel != "logical":
		return fatalError{fmt.Errorf("sealer: wal_level is %s; set wal_level = logical and restart PostgreSQL (docs/feed.md)", walLevel)}
	case !replication || !sealer:
		return fatalError{errors.New("sealer: the role needs the REPLICATION attribute and membership of audit_sealer (docs/feed.md)")}
	}
	return nil
}

// waitForLock takes the sealer's advisory lock, standing by while another
// sealer holds it.
func waitForLock(ctx context.Context, conn *pgx.Conn, cfg *Config) error {
	for waiting := false; ; waiting = true {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", database.SealerLock).Scan(&ok); err != nil {
			return fmt.Errorf("take sealer lock: %w", err)
		}
		if ok {
			if waiting {
				cfg.Logger.Info("sealer taking over")
			}
			return nil
		}
		if !waiting {
			cfg.Logger.Info("another sealer is active; standing by")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.RetryDelay):
		}
	}
}
