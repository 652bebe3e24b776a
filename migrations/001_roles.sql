-- The group roles of the audit log (see docs/dba.md). Role names are
-- cluster-wide: another database of the same cluster may have made them
-- already, or be making them at this moment, so each is created only when
-- missing and a concurrent creation is not an error.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM (VALUES
    ('audit_owner',      'auditlog: owns every audit object; SECURITY DEFINER functions run as it. Never logs in.'),
    ('audit_writer',     'auditlog: may call audit.log_event and audit.set_context, and nothing else.'),
    ('audit_reader',     'auditlog: may read audit.events, the tier tables and leaves, audit.actions and audit.partitions.'),
    ('audit_maintainer', 'auditlog: may call the retention functions the worker runs; no direct DML.')
  ) AS roles(name, about)
  LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r.name);
        EXECUTE format('COMMENT ON ROLE %I IS %L', r.name, r.about);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- made by a concurrent migration of another database
      END;
    END IF;
  END LOOP;

  -- A migrating role that is not a superuser hands objects to audit_owner,
  -- which needs membership.
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
     AND NOT pg_catalog.pg_has_role(current_user, 'audit_owner', 'MEMBER') THEN
    EXECUTE format('GRANT audit_owner TO %I', current_user);
  END IF;
END
$$;
