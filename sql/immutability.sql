-- Immutability, the second wall after privileges: no event is ever updated,
-- deleted or truncated. Row triggers on a partitioned table are cloned onto
-- every leaf, present and future; statement (TRUNCATE) triggers are not, so
-- audit.protect_leaf adds one to each leaf as it is made.
--
-- The one sanctioned delete is the retention worker moving an org's events
-- to another tier (audit.retier): it holds a DELETE privilege for the length
-- of its own transaction and marks that transaction in audit.retier_marks,
-- which only audit_owner may write. (A setting would not do: any session
-- may set any setting.)
CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' AND EXISTS (SELECT FROM audit.retier_marks m WHERE m.xid = pg_catalog.pg_current_xact_id()) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit events are immutable: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'AL010',
          HINT = 'Events leave the log only by retention (see docs/retention.md).';
END
$$;
COMMENT ON FUNCTION audit.refuse_change() IS 'Trigger: refuses UPDATE, DELETE and TRUNCATE of audit events.';

-- The triggers are made only where missing: making one locks its table
-- against inserts (SHARE ROW EXCLUSIVE), and this runs on every migrate.
-- What they do is audit.refuse_change's body, which CREATE OR REPLACE above
-- updates without a lock.
{{ range $tier := $.tiers }}
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                 WHERE tgrelid = 'audit.events_{{ $tier }}'::regclass AND tgname = 'immutable_rows') THEN
    CREATE TRIGGER immutable_rows BEFORE UPDATE OR DELETE ON audit.events_{{ $tier }}
      FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                 WHERE tgrelid = 'audit.events_{{ $tier }}'::regclass AND tgname = 'immutable_table') THEN
    CREATE TRIGGER immutable_table BEFORE TRUNCATE ON audit.events_{{ $tier }}
      FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
  END IF;
END
$$;
REVOKE UPDATE, DELETE, TRUNCATE ON audit.events_{{ $tier }} FROM audit_owner;
{{ end }}
