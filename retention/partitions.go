package retention

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier runs a query: *pgx.Conn, pgx.Tx and *pgxpool.Pool satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Partition is one leaf of a tier table, a row of audit.partitions.
type Partition struct {
	// Tier is free, team or enterprise.
	Tier string `db:"tier"`
	// Leaf is the table's name in schema audit.
	Leaf string `db:"leaf"`
	// RangeStart and RangeEnd bound the events it holds: one UTC day.
	RangeStart time.Time `db:"range_start"`
	RangeEnd   time.Time `db:"range_end"`
	// ExpiresAt is when all of it is past its tier's retention.
	ExpiresAt time.Time `db:"expires_at"`
	// EstimatedRows is the planner's estimate; nil if never analysed.
	EstimatedRows *int64 `db:"estimated_rows"`
	// Bytes is its size on disk, indexes included.
	Bytes int64 `db:"bytes"`
	// DetachPending is true while a concurrent detach is half done.
	DetachPending bool `db:"detach_pending"`
}

// Partitions lists the leaves, by tier (shortest retention first) and range.
// It needs SELECT on audit.partitions (audit_reader).
func Partitions(ctx context.Context, q Querier) ([]Partition, error) {
	return collect[Partition](ctx, q, "list partitions", partitionsSQL)
}

// collect runs a query and collects its rows as T, errors named by what.
func collect[T any](ctx context.Context, q Querier, what, sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err == nil {
		var ts []T
		if ts, err = pgx.CollectRows(rows, pgx.RowToStructByName[T]); err == nil {
			return ts, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", what, err)
}

// Holdup is a leaf past its tier's retention that is still stored, and what
// keeps it: a row of audit.retention_holdups.
type Holdup struct {
	Tier      string    `db:"tier"`
	Leaf      string    `db:"leaf"`
	ExpiresAt time.Time `db:"expires_at"`
	// State is attached, detach pending or detached (not dropped).
	State string `db:"state"`
	// HeldBy is "plan change" (ChangeID, not re-tiered yet: the next pass
	// retires the leaf all the same), "transactions" (the sessions PIDs hold
	// its tier table, or a plan change not committed yet, which the detach
	// or the drop waits for), or "nothing" (the next pass retires it).
	HeldBy   string  `db:"held_by"`
	ChangeID *int64  `db:"change_id"`
	PIDs     []int32 `db:"pids"`
}

// Holdups lists the leaves past their retention as of now (nil: the
// database's clock) that are still stored, and what keeps each. It needs
// audit_reader.
func Holdups(ctx context.Context, q Querier, now *time.Time) ([]Holdup, error) {
	return collect[Holdup](ctx, q, "list retention holdups", holdupsSQL, now)
}
