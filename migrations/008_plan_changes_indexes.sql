-- Plan changes: the indexes the retention worker's listing needs
-- (audit.pending_plan_changes in sql/retention.sql), so that it reads the
-- changes of the last day and each org's latest change, not every change
-- ever made: the changes re-tiered recently, and an org's changes in order.
SET LOCAL ROLE audit_owner;

CREATE INDEX plan_changes_retiered_at_idx ON audit.plan_changes (retiered_at) WHERE retiered_at IS NOT NULL;
CREATE INDEX plan_changes_org_id_id_idx ON audit.plan_changes (org_id, id);

COMMENT ON COLUMN audit.plan_changes.retiered_at IS 'When the worker finished moving the org''s events to the tier of its current plan; NULL while pending. An org''s latest change takes along its earlier ones still pending, which get the same retiered_at and no moved or removed rows.';
COMMENT ON COLUMN audit.plan_changes.moved_rows IS 'Events moved to the tier of the org''s current plan (or found there already) by re-tiering this change.';
COMMENT ON COLUMN audit.plan_changes.removed_rows IS 'Events removed by re-tiering this change because the org''s current plan no longer retains them.';

RESET ROLE;
