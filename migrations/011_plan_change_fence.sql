-- Plan changes: the fence the retention worker sets once no snapshot that
-- could miss the change is left (audit.fence_plan_changes in sql/retier.sql);
-- the change is re-tiered only once every transaction older than the fence
-- has ended, so that none can still write the org's events to an old tier.
SET LOCAL ROLE audit_owner;

ALTER TABLE audit.plan_changes ADD COLUMN fence_xid xid8;

COMMENT ON COLUMN audit.plan_changes.fence_xid IS 'The next transaction id when the retention worker found no session of the database holding a snapshot that could miss this change; NULL until then. A transaction older than it may have written the org''s events to the old tier; once none is left, none can.';

RESET ROLE;
