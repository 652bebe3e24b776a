-- Plan changes and the read scope: which tier tables hold an org's events,
-- and how far back its current plan lets anyone see.

-- audit.record_plan_change is the trigger on cloud.orgs that notes a plan
-- change for the retention worker (sql/cloud_triggers.sql attaches it). It
-- takes its lock on audit.plan_changes first and the instant of the change
-- after: a drop of a detached leaf (audit.drop_leaf) holds the table in SHARE
-- mode while it keeps what the orgs' plans still retain of the leaf's day, so
-- a change that commits after such a drop is dated after it and claims
-- nothing of that day (keep_since), and one that commits before is seen.
CREATE OR REPLACE FUNCTION audit.record_plan_change() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_at timestamptz;
BEGIN
  LOCK TABLE audit.plan_changes IN ROW EXCLUSIVE MODE;
  v_at := clock_timestamp();
  INSERT INTO audit.plan_changes (org_id, from_tier, to_tier, changed_at, keep_since)
  SELECT NEW.id, OLD.plan, NEW.plan, v_at, v_at - t.retention
  FROM audit.tiers t WHERE t.tier = OLD.plan;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION audit.record_plan_change() IS 'Trigger on cloud.orgs: records a plan change in audit.plan_changes for the retention worker.';

-- audit.retention_floor is the oldest instant of an org's events that its
-- plan (of that retention) keeps as of `at`: no older than the retention, and
-- nothing a plan change already let expire (keep_since). The one statement of
-- the rule for audit.events, audit.org_scope and audit.retier_scope. It only
-- reads, so a parallel scan of audit.events may call it.
CREATE OR REPLACE FUNCTION audit.retention_floor(org_id uuid, retention interval, at timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
PARALLEL SAFE
RETURN greatest(retention_floor.at - retention_floor.retention,
                (SELECT max(c.keep_since) FROM audit.plan_changes c WHERE c.org_id = retention_floor.org_id));
COMMENT ON FUNCTION audit.retention_floor(uuid, interval, timestamptz) IS
  'The oldest instant of an org''s events its plan keeps as of at: the retention, and what plan changes let expire.';

-- audit.org_scope tells a reader what to scan for one org: its plan and
-- retention, the floor below which nothing may be shown (the current plan's
-- retention, and what earlier plans had already let expire), and the tier
-- tables holding its events (more than one while a re-tier is pending).
-- One small lookup, so readers can then scan the tier tables with the floor
-- as an index bound. `at` replaces now() for tests.
CREATE OR REPLACE FUNCTION audit.org_scope(org_id uuid, at timestamptz DEFAULT NULL)
RETURNS TABLE (plan text, retention interval, floor timestamptz, tiers text[])
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT o.plan, t.retention,
         audit.retention_floor(o.id, t.retention, coalesce(org_scope.at, now())),
         ARRAY(SELECT o.plan
               UNION
               SELECT c.from_tier FROM audit.plan_changes c WHERE c.org_id = o.id AND c.retiered_at IS NULL)
  FROM cloud.orgs o
  JOIN audit.tiers t ON t.tier = o.plan
  WHERE o.id = org_scope.org_id;
END;
COMMENT ON FUNCTION audit.org_scope(uuid, timestamptz) IS
  'For one org: its plan and retention, the earliest instant a read may show, and the tier tables holding its events.';
