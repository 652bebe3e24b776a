-- Each seal keeps the hash of the link before it (32 zero bytes before seq
-- 1), so that an export reads an event's proof (seq, hash, prev_hash) with
-- one lookup of its seal instead of two (its seal, then the seal before by
-- seq), and still has it once retention pruned the seal before. The sealer
-- fills it from the org's head (audit.record_seals). Existing seals get it
-- from the seal before, or the removal checkpoint that holds it.
SET LOCAL ROLE audit_owner;

ALTER TABLE audit.seals ADD COLUMN prev_hash bytea CHECK (length(prev_hash) = 32);
COMMENT ON COLUMN audit.seals.prev_hash IS 'The hash of seq - 1 (32 zero bytes for seq 1): the previous hash this seal''s hash was computed from. NULL only for a seal recorded before it existed whose previous link was already gone.';

UPDATE audit.seals s
SET prev_hash = CASE WHEN p.seq = 1 THEN decode(repeat('00', 32), 'hex')
                     WHEN p.prev_seq = p.seq - 1 THEN p.prev_hash
                     ELSE c.hash END
FROM (
  SELECT org_id, seq,
         lag(seq) OVER (PARTITION BY org_id ORDER BY seq) AS prev_seq,
         lag(hash) OVER (PARTITION BY org_id ORDER BY seq) AS prev_hash
  FROM audit.seals
) p
LEFT JOIN audit.checkpoints c ON c.kind = 'removal' AND c.org_id = p.org_id AND c.seq = p.seq - 1
WHERE s.org_id = p.org_id AND s.seq = p.seq;

RESET ROLE;
