-- The read-only API's secrets (sql/api.sql makes the key on every migrate
-- unless it exists, so deleting a row and migrating rotates it).
SET LOCAL ROLE audit_owner;

CREATE TABLE audit.api_keys (
  name       text        PRIMARY KEY,
  secret     bytea       NOT NULL CHECK (length(secret) >= 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit.api_keys IS 'Secrets of the read-only API (cursor: signs page cursors). Readable only through audit.api_key. Delete a row and migrate to rotate it; cursors signed with the old key are then refused.';
COMMENT ON COLUMN audit.api_keys.name IS 'What the key is for.';
COMMENT ON COLUMN audit.api_keys.secret IS 'The key, 32 random bytes.';
COMMENT ON COLUMN audit.api_keys.created_at IS 'When it was made.';

RESET ROLE;
