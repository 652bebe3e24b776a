-- What the read-only API needs beyond audit_reader's SELECTs: token
-- authentication without reading the control-plane tables, the key that
-- signs its page cursors, and the neutralising of CSV cells.

-- audit.authenticate checks a personal access token (by its SHA-256) and says
-- what its user is in one org. No row: the token is unknown, expired or
-- revoked. A row with a NULL role: the token is good but its user is not a
-- member of the org, or there is no such org (the caller must not tell which).
-- `at` replaces now() for tests.
CREATE OR REPLACE FUNCTION audit.authenticate(token_hash bytea, org_id uuid, at timestamptz DEFAULT NULL)
RETURNS TABLE (pat_id uuid, user_id uuid, role text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT p.id, p.user_id, m.role
  FROM cloud.pats p
  LEFT JOIN cloud.org_members m ON m.user_id = p.user_id AND m.org_id = authenticate.org_id
  WHERE p.token_hash = authenticate.token_hash
    AND p.revoked_at IS NULL
    AND (p.expires_at IS NULL OR p.expires_at > coalesce(authenticate.at, now()));
END;
COMMENT ON FUNCTION audit.authenticate(bytea, uuid, timestamptz) IS
  'For the API: the token (by SHA-256) if it is valid, and its user''s role in the org (NULL: not a member, or no such org).';

-- The key the API signs its page cursors with (table audit.api_keys): made
-- on first install, shared by every replica and kept across restarts.
INSERT INTO audit.api_keys (name, secret)
SELECT 'cursor', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
ON CONFLICT (name) DO NOTHING;

-- audit.api_key gives the API one of its keys.
CREATE OR REPLACE FUNCTION audit.api_key(name text) RETURNS bytea
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT k.secret FROM audit.api_keys k WHERE k.name = api_key.name);
COMMENT ON FUNCTION audit.api_key(text) IS 'For the API: the secret of one of its keys (cursor).';

-- audit.csv_cell neutralises a text cell a spreadsheet would run as a
-- formula (starting with = + - @, a tab or a carriage return) by prefixing
-- a single quote, as OWASP advises. Inlined into the export query.
CREATE OR REPLACE FUNCTION audit.csv_cell(cell text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN left(cell, 1) IN ('=', '+', '-', '@', E'\t', E'\r') THEN '''' || cell ELSE cell END;
COMMENT ON FUNCTION audit.csv_cell(text) IS 'A CSV cell that a spreadsheet will not run as a formula: a leading = + - @ tab or CR gets a single quote before it.';

-- audit.org_name gives the API the display name of an org, which the
-- Activity page shows; the API reads nothing of cloud.orgs itself.
CREATE OR REPLACE FUNCTION audit.org_name(org_id uuid) RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT o.name FROM cloud.orgs o WHERE o.id = org_name.org_id);
COMMENT ON FUNCTION audit.org_name(uuid) IS 'For the API: the display name of an org.';
