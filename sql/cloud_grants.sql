-- What audit_owner, and so the SECURITY DEFINER functions, may read of the
-- control-plane tables: log_event checks orgs and looks up actor emails;
-- authenticate checks a token and its user's membership for the API.
GRANT USAGE ON SCHEMA cloud TO audit_owner;
GRANT SELECT ON cloud.orgs, cloud.users, cloud.org_members TO audit_owner;
GRANT SELECT (id, user_id, token_hash, expires_at, revoked_at) ON cloud.pats TO audit_owner;
