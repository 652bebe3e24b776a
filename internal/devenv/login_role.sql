-- Makes the login role named by the setting devenv.role, unless it exists,
-- and grants it the group roles listed (comma-separated) in devenv.groups;
-- devenv.noinherit says whether it inherits their rights or must SET ROLE,
-- devenv.replication whether it has the REPLICATION attribute.
-- Role names are cluster-wide: another database of the cluster may be
-- making it at the same moment, which is not an error. No password: the
-- local cluster listens only on its unix socket and trusts local connections.
DO $$
DECLARE
  v_role    text := current_setting('devenv.role');
  v_inherit text := CASE WHEN current_setting('devenv.noinherit')::boolean THEN 'NOINHERIT' ELSE 'INHERIT' END;
  v_repl    boolean := current_setting('devenv.replication')::boolean;
  v_group   text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
    BEGIN
      EXECUTE format('CREATE ROLE %I LOGIN %s', v_role, v_inherit);
      EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, 'auditlog dev: ' || current_setting('devenv.about'));
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- made by a concurrent `auditlog dev` on another database
    END;
  END IF;
  -- A role made by an older version may inherit when it should not.
  IF (SELECT rolinherit FROM pg_catalog.pg_roles WHERE rolname = v_role) <> (v_inherit = 'INHERIT') THEN
    EXECUTE format('ALTER ROLE %I %s', v_role, v_inherit);
  END IF;
  IF (SELECT rolreplication FROM pg_catalog.pg_roles WHERE rolname = v_role) <> v_repl THEN
    EXECUTE format('ALTER ROLE %I %s', v_role, CASE WHEN v_repl THEN 'REPLICATION' ELSE 'NOREPLICATION' END);
  END IF;
  FOREACH v_group IN ARRAY string_to_array(current_setting('devenv.groups'), ',') LOOP
    IF NOT pg_catalog.pg_has_role(v_role, v_group, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO %I', v_group, v_role);
    END IF;
  END LOOP;
END
$$;
