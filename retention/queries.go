package retention

// The statements of a pass. Each calls a maintenance function of
// sql/retention.sql or sql/retier.sql, where the work and its checks live;
// the one exception is the DETACH statement, which audit.expired_leaves hands
// over and the worker runs as audit_owner (see pass.asOwner).
const (
	tryLockSQL = `SELECT pg_try_advisory_lock($1)`
	unlockSQL  = `SELECT pg_advisory_unlock($1)`

	// sessionSQL sets the role the next statements run as (SET ROLE) and
	// bounds their lock waits and run time. Each statement reads committed,
	// whatever the database's or role's default: a drop must see the plan
	// changes it waited for (audit.keep_from_leaf).
	sessionSQL = `SELECT set_config('role', $1, false), set_config('lock_timeout', $2, false),
		set_config('statement_timeout', $3, false), set_config('default_transaction_isolation', 'read committed', false)`

	// clockSQL returns the instant the pass acts at and when it started.
	clockSQL = `SELECT audit.retention_clock($1, $2), clock_timestamp()`

	missingLeavesSQL = `SELECT leaf FROM audit.missing_leaves($1, $2)`
	premakeSQL       = `SELECT leaf FROM audit.premake_leaves($1, $2) AS leaf`

	expiredLeavesSQL = `SELECT tier, leaf, coalesce(detach_sql, '') AS detach_sql FROM audit.expired_leaves($1)`
	dropLeafSQL      = `SELECT audit.drop_leaf($1, $2)`

	fenceSQL          = `SELECT audit.fence_plan_changes()`
	pendingChangesSQL = `SELECT id, org_id::text, from_tier, to_tier, ready, to_move, to_remove
		FROM audit.pending_plan_changes($1)`
	retierSQL = `SELECT moved, removed, done FROM audit.retier($1, $2, $3)`

	recordRunSQL = `SELECT audit.record_retention_run($1, $2, $3, $4, $5, $6, $7, $8, $9)`

	partitionsSQL = `SELECT tier, leaf, range_start, range_end, expires_at, estimated_rows, bytes, detach_pending
		FROM audit.partitions p
		JOIN audit.tiers t USING (tier)
		ORDER BY t.retention, p.range_start`

	holdupsSQL = `SELECT tier, leaf, expires_at, state, held_by, change_id, pids FROM audit.retention_holdups($1)`
)
