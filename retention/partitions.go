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
	rows, err := q.Query(ctx, partitionsSQL)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowToStructByName[Partition])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	return parts, nil
}
