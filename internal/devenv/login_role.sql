-- Makes the login role named by the setting devenv.role, unless it exists,
-- and grants it the group role named by devenv.group. Role names are
-- cluster-wide: another database of the cluster may be making it at the
-- same moment, which is not an error. No password: the local cluster
-- listens only on its unix socket and trusts local connections.
DO $$
DECLARE
  v_role  text := current_setting('devenv.role');
  v_group text := current_setting('devenv.group');
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
    BEGIN
      EXECUTE format('CREATE ROLE %I LOGIN', v_role);
      EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, 'auditlog dev: ' || current_setting('devenv.about'));
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- made by a concurrent `auditlog dev` on another database
    END;
  END IF;
  EXECUTE format('GRANT %I TO %I', v_group, v_role);
END
$$;
