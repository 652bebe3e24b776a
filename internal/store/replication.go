package store

import (
	"context"
	"fmt"
	"time"
)

// Replication is the database server's place in streaming replication.
type Replication struct {
	// Standby is true on a hot standby (pg_is_in_recovery()).
	Standby bool
	// ReceivingWAL is true on a standby whose WAL receiver runs (it is
	// connected to its primary, or trying to).
	ReceivingWAL bool
	// ReplayLag is, on a standby, how far what it shows is behind its
	// primary: zero while it streams and has replayed all it received, else
	// the time since the last transaction it replayed committed on the
	// primary. Nil on a primary, and on a standby that has replayed no
	// transaction since it started.
	ReplayLag *time.Duration
}

// replicationSQL needs no privilege: a role without pg_read_all_stats sees
// only the WAL receiver's pid, which says whether one runs.
const replicationSQL = `
	SELECT pg_is_in_recovery(), EXISTS (SELECT FROM pg_stat_wal_receiver),
	       coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), false),
	       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8`

// Replication says whether the server is a standby and, if so, its replay
// lag.
func (s *Store) Replication(ctx context.Context) (Replication, error) {
	var r Replication
	var caughtUp bool
	var sinceCommit *float64
	if err := s.pool.QueryRow(ctx, replicationSQL).Scan(&r.Standby, &r.ReceivingWAL, &caughtUp, &sinceCommit); err != nil {
		return Replication{}, fmt.Errorf("read replication status: %w", err)
	}
	if r.Standby {
		r.ReplayLag = replayLag(r.ReceivingWAL, caughtUp, sinceCommit)
	}
	return r, nil
}

// replayLag is a standby's lag: zero while it streams and has replayed all
// it received, else the seconds since the last transaction it replayed
// committed (never below zero: the two servers' clocks may differ), or nil
// when it has replayed none since it started. Unknown is not zero: a
// standby started while its primary is down must not look caught up.
func replayLag(receiving, caughtUp bool, sinceCommit *float64) *time.Duration {
	var d time.Duration
	switch {
	case receiving && caughtUp:
	case sinceCommit == nil:
		return nil
	default:
		d = time.Duration(max(0, *sinceCommit) * float64(time.Second))
	}
	return &d
}
