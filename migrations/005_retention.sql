-- Retention runs: one row per pass of the retention worker (retention/), so a
-- DBA can see what it did and when. The worker writes it only through
-- audit.record_retention_run (sql/retention.sql).
SET LOCAL ROLE audit_owner;

CREATE TABLE audit.retention_runs (
  id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at     timestamptz NOT NULL,
  finished_at    timestamptz NOT NULL,
  duration       interval    GENERATED ALWAYS AS (finished_at - started_at) STORED,
  clock          timestamptz NOT NULL,
  worker         text        NOT NULL,
  leaves_created text[]      NOT NULL DEFAULT '{}',
  leaves_dropped text[]      NOT NULL DEFAULT '{}',
  orgs_retiered  uuid[]      NOT NULL DEFAULT '{}',
  rows_moved     bigint      NOT NULL DEFAULT 0 CHECK (rows_moved >= 0),
  rows_removed   bigint      NOT NULL DEFAULT 0 CHECK (rows_removed >= 0),
  errors         text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX retention_runs_started_at_idx ON audit.retention_runs (started_at);

COMMENT ON TABLE audit.retention_runs IS 'One row per pass of the retention worker: leaves made and dropped, orgs re-tiered, rows moved and removed, errors. Dry runs and passes skipped because another worker held the lock are not recorded.';
COMMENT ON COLUMN audit.retention_runs.id IS 'Run id, in order of recording.';
COMMENT ON COLUMN audit.retention_runs.started_at IS 'When the pass started (database clock).';
COMMENT ON COLUMN audit.retention_runs.finished_at IS 'When the pass finished (database clock).';
COMMENT ON COLUMN audit.retention_runs.duration IS 'How long the pass took.';
COMMENT ON COLUMN audit.retention_runs.clock IS 'The instant the pass acted at: the database clock, or the clock injected with auditlog retention run --now (never later than the database clock for a pass that drops or removes).';
COMMENT ON COLUMN audit.retention_runs.worker IS 'Which worker ran the pass: host and process id.';
COMMENT ON COLUMN audit.retention_runs.leaves_created IS 'Leaves made ahead of time (names in schema audit).';
COMMENT ON COLUMN audit.retention_runs.leaves_dropped IS 'Expired leaves detached and dropped.';
COMMENT ON COLUMN audit.retention_runs.orgs_retiered IS 'Orgs whose plan change this pass finished re-tiering (see audit.plan_changes).';
COMMENT ON COLUMN audit.retention_runs.rows_moved IS 'Events moved to another tier after a plan change.';
COMMENT ON COLUMN audit.retention_runs.rows_removed IS 'Events removed after a plan change because the new plan no longer retains them.';
COMMENT ON COLUMN audit.retention_runs.errors IS 'What went wrong, one message per failed step; the next pass tries again.';

RESET ROLE;
