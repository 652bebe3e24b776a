-- What audit_owner, and so the SECURITY DEFINER functions, may read of the
-- control-plane tables: log_event checks orgs and looks up actor emails.
GRANT USAGE ON SCHEMA cloud TO audit_owner;
GRANT SELECT ON cloud.orgs, cloud.users TO audit_owner;
