-- Triggers on the control-plane tables, attached by the role that owns them.
-- A host application may have replaced cloud.orgs by a view of its own table
-- (docs/recording.md); it attaches the trigger to that table itself. Made
-- only when missing: making it locks cloud.orgs against writes.
DO $$
BEGIN
  IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'cloud.orgs'::regclass) IN ('r', 'p')
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                     WHERE tgrelid = 'cloud.orgs'::regclass AND tgname = 'audit_plan_change') THEN
    CREATE TRIGGER audit_plan_change
      AFTER UPDATE OF plan ON cloud.orgs
      FOR EACH ROW WHEN (OLD.plan IS DISTINCT FROM NEW.plan)
      EXECUTE FUNCTION audit.record_plan_change();
  END IF;
END
$$;
