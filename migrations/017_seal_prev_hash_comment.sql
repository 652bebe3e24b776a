-- The comment on audit.seals.prev_hash said that only a seal whose previous
-- link was gone when migration 015 filled the column in has none; so does a
-- seal that a sealer of before 015 recorded while 015 was being applied
-- (verify --org accepts both, docs/feed.md).
SET LOCAL ROLE audit_owner;

COMMENT ON COLUMN audit.seals.prev_hash IS 'The hash of seq - 1 (32 zero bytes for seq 1): the previous hash this seal''s hash was computed from. NULL for a seal recorded before migration 015, whose previous link was gone when it was applied, or recorded while it was being applied; readers then look the link up by (org_id, seq - 1).';

RESET ROLE;
