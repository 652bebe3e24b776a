-- Plan changes: caught by a trigger on cloud.orgs (sql/plans.sql), they send
-- the org's new events to the new tier at once; the retention worker then
-- moves the events the new plan still retains and removes the rest.
SET LOCAL ROLE audit_owner;

CREATE TABLE audit.plan_changes (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org_id       uuid        NOT NULL,
  from_tier    text        NOT NULL REFERENCES audit.tiers,
  to_tier      text        NOT NULL REFERENCES audit.tiers,
  changed_at   timestamptz NOT NULL DEFAULT now(),
  changed_xid  xid8        NOT NULL DEFAULT pg_current_xact_id(),
  keep_since   timestamptz NOT NULL,
  retiered_at  timestamptz,
  moved_rows   bigint,
  removed_rows bigint
);
CREATE INDEX plan_changes_org_id_idx ON audit.plan_changes (org_id, keep_since);
CREATE INDEX plan_changes_pending_idx ON audit.plan_changes (id) WHERE retiered_at IS NULL;

COMMENT ON TABLE audit.plan_changes IS 'One row per change of an org''s plan. Until retiered_at is set, some of the org''s events still sit in the old tier''s table.';
COMMENT ON COLUMN audit.plan_changes.id IS 'Change id, in order of commit.';
COMMENT ON COLUMN audit.plan_changes.org_id IS 'The org whose plan changed.';
COMMENT ON COLUMN audit.plan_changes.from_tier IS 'Plan (and tier) before the change.';
COMMENT ON COLUMN audit.plan_changes.to_tier IS 'Plan (and tier) after the change; new events go there at once.';
COMMENT ON COLUMN audit.plan_changes.changed_at IS 'When the plan changed.';
COMMENT ON COLUMN audit.plan_changes.changed_xid IS 'Transaction that changed it; the worker re-tiers only once every transaction that could still write to the old tier has ended.';
COMMENT ON COLUMN audit.plan_changes.keep_since IS 'What the old plan still retained at the change (changed_at minus its retention): older events are never shown again, even after an upgrade.';
COMMENT ON COLUMN audit.plan_changes.retiered_at IS 'When the worker finished moving the org''s events to the new tier; NULL while pending.';
COMMENT ON COLUMN audit.plan_changes.moved_rows IS 'Events moved to the new tier.';
COMMENT ON COLUMN audit.plan_changes.removed_rows IS 'Events removed because the new plan no longer retains them.';

RESET ROLE;
