-- The sealer's writes (docs/feed.md). Each function checks what it records:
-- seals continue each org's sequence with no gap and no reuse, and progress
-- only moves forward. audit_sealer may run them and read the seal tables;
-- nothing else writes here.

-- audit.record_seals records a batch of seals, given as parallel arrays, and
-- moves the slot's progress to p_lsn (NULL: a pass over existing events,
-- which leaves progress alone) in the same transaction, so a sealer killed
-- at any instant resumes after the last batch it recorded. p_xid holds the
-- 32-bit ids of the events' transactions as the WAL gives them (NULL for a
-- pass over existing events); they are stored as xid8, in the epoch that
-- puts them at or before this transaction's own id.
DROP FUNCTION IF EXISTS audit.record_seals(text, pg_lsn, uuid[], bigint[], timestamptz[], uuid[], bytea[]);
CREATE OR REPLACE FUNCTION audit.record_seals(
  p_slot text, p_lsn pg_lsn,
  p_org uuid[], p_seq bigint[], p_occurred_at timestamptz[], p_event uuid[], p_hash bytea[], p_xid bigint[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  bad record;
  v_now bigint := pg_current_xact_id()::text::bigint;
BEGIN
  IF p_xid IS NOT NULL AND cardinality(p_xid) <> cardinality(p_seq) THEN
    RAISE EXCEPTION 'seals: % transaction ids for % seals', cardinality(p_xid), cardinality(p_seq)
      USING ERRCODE = 'AL030';
  END IF;
  -- Per org, the batch's seqs must be head+1, head+2, ... with none missing.
  SELECT b.org_id, min(b.seq) AS first, max(b.seq) AS last, count(*) AS n, coalesce(h.seq, 0) AS head
  INTO bad
  FROM unnest(p_org, p_seq) AS b(org_id, seq)
  LEFT JOIN audit.seal_heads h ON h.org_id = b.org_id
  GROUP BY b.org_id, h.seq
  HAVING min(b.seq) <> coalesce(h.seq, 0) + 1 OR max(b.seq) - min(b.seq) + 1 <> count(*)
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'seals of org % would not continue its sequence: head %, batch % to % (% seals)',
      bad.org_id, bad.head, bad.first, bad.last, bad.n
      USING ERRCODE = 'AL030';
  END IF;

  -- Each seal's prev_hash: the seal before it in the batch, else the org's
  -- head (none: seq 1, after 32 zero bytes).
  INSERT INTO audit.seals (org_id, seq, occurred_at, event_id, hash, prev_hash, xid)
  SELECT b.org_id, b.seq, b.occurred_at, b.event_id, b.hash,
         coalesce(lag(b.hash) OVER (PARTITION BY b.org_id ORDER BY b.seq), h.hash, decode(repeat('00', 32), 'hex')),
         ((((v_now >> 32) - (b.xid > (v_now & 4294967295))::int) << 32) | b.xid)::text::xid8
  FROM unnest(p_org, p_seq, p_occurred_at, p_event, p_hash, p_xid) AS b(org_id, seq, occurred_at, event_id, hash, xid)
  LEFT JOIN audit.seal_heads h ON h.org_id = b.org_id;

  INSERT INTO audit.seal_heads AS h (org_id, seq, hash, sealed_at)
  SELECT DISTINCT ON (b.org_id) b.org_id, b.seq, b.hash, now()
  FROM unnest(p_org, p_seq, p_hash) AS b(org_id, seq, hash)
  ORDER BY b.org_id, b.seq DESC
  ON CONFLICT (org_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, sealed_at = excluded.sealed_at;

  IF p_lsn IS NOT NULL THEN
    UPDATE audit.sealer_progress p
    SET lsn = p_lsn, sealed_at = now(), events = p.events + coalesce(cardinality(p_seq), 0)
    WHERE p.slot = p_slot AND p.lsn <= p_lsn;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'sealer progress of slot % cannot move to %', p_slot, p_lsn USING ERRCODE = 'AL030';
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION audit.record_seals(text, pg_lsn, uuid[], bigint[], timestamptz[], uuid[], bytea[], bigint[]) IS
  'For the sealer: records seals (each org''s sequence continued with no gap) and the slot''s progress.';

-- audit.set_sealer_progress marks a slot new (0/0: its pass over existing
-- events is not done) or done with that pass at its consistent point.
CREATE OR REPLACE FUNCTION audit.set_sealer_progress(p_slot text, p_lsn pg_lsn) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  INSERT INTO audit.sealer_progress (slot, lsn, sealed_at) VALUES (p_slot, p_lsn, now())
  ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, sealed_at = excluded.sealed_at;
END;
COMMENT ON FUNCTION audit.set_sealer_progress(text, pg_lsn) IS
  'For the sealer: starts a slot (0/0) or records the end of its pass over existing events.';

-- audit.register_seal_key makes key p_key_id the one that signs from now on.
CREATE OR REPLACE FUNCTION audit.register_seal_key(p_key_id text, p_public_key bytea) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_key_id <> left(encode(sha256(p_public_key), 'hex'), 16) THEN
    RAISE EXCEPTION 'key id % does not match the public key', p_key_id USING ERRCODE = 'AL030';
  END IF;
  UPDATE audit.seal_keys SET valid_until = now() WHERE key_id <> p_key_id AND valid_until IS NULL;
  INSERT INTO audit.seal_keys (key_id, public_key) VALUES (p_key_id, p_public_key)
  ON CONFLICT (key_id) DO UPDATE SET valid_until = NULL;
END
$$;
COMMENT ON FUNCTION audit.register_seal_key(text, bytea) IS 'For the sealer: the Ed25519 key that signs checkpoints from now on.';

-- audit.unsigned_heads lists heads newer than their org's latest checkpoint.
CREATE OR REPLACE FUNCTION audit.unsigned_heads(p_limit integer)
RETURNS TABLE (org_id uuid, seq bigint, hash bytea)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT h.org_id, h.seq, h.hash
  FROM audit.seal_heads h
  WHERE h.seq > coalesce((SELECT max(c.seq) FROM audit.checkpoints c WHERE c.org_id = h.org_id), 0)
  ORDER BY h.sealed_at
  LIMIT p_limit;
END;
COMMENT ON FUNCTION audit.unsigned_heads(integer) IS 'For the sealer: org heads that no checkpoint covers yet.';

-- audit.record_checkpoints stores signed checkpoints of one kind. A day's
-- checkpoint is replaced by a later one of the same UTC day; a removal
-- checkpoint replaces every checkpoint of its org at an earlier seq.
CREATE OR REPLACE FUNCTION audit.record_checkpoints(
  p_kind text, p_key_id text,
  p_org uuid[], p_seq bigint[], p_hash bytea[], p_signed_at timestamptz[], p_signature bytea[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_kind = 'day' THEN
    INSERT INTO audit.checkpoints AS c (kind, org_id, day, seq, hash, signed_at, key_id, signature)
    SELECT 'day', b.org_id, (b.signed_at AT TIME ZONE 'UTC')::date, b.seq, b.hash, b.signed_at, p_key_id, b.signature
    FROM unnest(p_org, p_seq, p_hash, p_signed_at, p_signature) AS b(org_id, seq, hash, signed_at, signature)
    ON CONFLICT (org_id, day) WHERE kind = 'day' DO UPDATE
      SET seq = excluded.seq, hash = excluded.hash, signed_at = excluded.signed_at,
          key_id = excluded.key_id, signature = excluded.signature
      WHERE c.seq < excluded.seq;
  ELSE
    INSERT INTO audit.checkpoints (kind, org_id, seq, hash, signed_at, key_id, signature)
    SELECT p_kind, b.org_id, b.seq, b.hash, b.signed_at, p_key_id, b.signature
    FROM unnest(p_org, p_seq, p_hash, p_signed_at, p_signature) AS b(org_id, seq, hash, signed_at, signature)
    ON CONFLICT (org_id, seq) WHERE kind = 'removal' DO NOTHING;
    -- The chain now starts after this removal checkpoint: those before it
    -- prove links no longer stored, and nothing reads them again.
    DELETE FROM audit.checkpoints c
    USING unnest(p_org, p_seq) AS b(org_id, seq)
    WHERE c.org_id = b.org_id AND c.seq < b.seq;
  END IF;
END
$$;
COMMENT ON FUNCTION audit.record_checkpoints(text, text, uuid[], bigint[], bytea[], timestamptz[], bytea[]) IS
  'For the sealer: stores signed checkpoints (kind day or removal).';

-- audit.stored_events: every stored event of every tier, expired or not;
-- what seals point at.
CREATE OR REPLACE VIEW audit.stored_events AS
{{ range $i, $tier := $.tiers }}{{ if $i }}UNION ALL
{{ end }}SELECT * FROM audit.events_{{ $tier }}
{{ end }};
COMMENT ON VIEW audit.stored_events IS 'Every stored event of the three tier tables, whether retention still shows it or not (see audit.events).';

-- audit.sealed_events: the seals of each org in seq order with their events;
-- the event columns are NULL where retention removed the event.
CREATE OR REPLACE VIEW audit.sealed_events AS
SELECT s.org_id, s.seq, s.hash, s.sealed_at, s.occurred_at AS sealed_occurred_at, s.event_id,
       e.id, e.occurred_at, e.action, e.target_type, e.target_id, e.actor_type, e.actor_id,
       e.actor_email, e.ip, e.user_agent, e.request_id, e.metadata, s.prev_hash
FROM audit.seals s
LEFT JOIN audit.stored_events e ON e.org_id = s.org_id AND e.occurred_at = s.occurred_at AND e.id = s.event_id;
COMMENT ON VIEW audit.sealed_events IS 'Seals with their events (event columns NULL once retention removed the event); for auditlog verify.';

-- audit.unsealed_events: stored events with no seal. Right after a commit,
-- until the sealer catches up; at any other time, an event written around
-- the front door.
CREATE OR REPLACE VIEW audit.unsealed_events AS
SELECT e.*
FROM audit.stored_events e
WHERE NOT EXISTS (SELECT FROM audit.seals s
                  WHERE s.org_id = e.org_id AND s.occurred_at = e.occurred_at AND s.event_id = e.id);
COMMENT ON VIEW audit.unsealed_events IS 'Stored events without a seal: not yet sealed, or written around audit.log_event while no sealer was reading.';

-- audit.prune_seals removes, per org, the oldest seals whose events
-- retention has removed (gone, and older than the org's retention floor),
-- up to p_batch in all, and returns per org the last seal it removed: the
-- sealer signs it as a removal checkpoint in the same transaction, so the
-- chain stays verifiable from the first kept event. A seal whose event is
-- gone but that follows a kept one waits until the events before it go too
-- (a late-committed or imported event may be older than events sealed
-- before it). Nor is an event gone while a leaf of its day is detached or
-- pending a detach: out of the tier tables, but its drop may yet copy it to
-- the tier of a plan that keeps it (audit.keep_from_leaf), sealed already.
-- An org is looked at only if its first seal is prunable (one index probe
-- and its floor, in one statement for every org), and then read only as
-- far as it prunes, plus one seal.
CREATE OR REPLACE FUNCTION audit.prune_seals(p_batch integer)
RETURNS TABLE (org_id uuid, seq bigint, hash bytea)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c record;
  v_left integer := p_batch;
  v_stop bigint;
  v_last bigint;
  v_hash bytea;
  v_n integer;
  v_limbo tstzmultirange;
BEGIN
  SELECT coalesce(range_agg(tstzrange(l.range_start, l.range_end)), '{}') INTO v_limbo
  FROM audit.leaf_states() l WHERE l.state <> 'attached';
  -- Only retention removes events, below the floor: a seal whose event is
  -- gone above it stays, so verify names the deletion. No floor: the org
  -- is gone.
  FOR c IN
    SELECT h.org_id AS org, f.seq AS first, audit.retention_floor(o.id, t.retention, now()) AS floor
    FROM audit.seal_heads h
    JOIN cloud.orgs o ON o.id = h.org_id
    JOIN audit.tiers t ON t.tier = o.plan
    CROSS JOIN LATERAL (
      SELECT s.seq, s.occurred_at, s.event_id FROM audit.seals s WHERE s.org_id = h.org_id ORDER BY s.seq LIMIT 1
    ) f
    WHERE f.occurred_at < audit.retention_floor(o.id, t.retention, now())
      AND NOT f.occurred_at <@ v_limbo
      AND NOT EXISTS (SELECT FROM audit.stored_events e
                      WHERE e.org_id = h.org_id AND e.occurred_at = f.occurred_at AND e.id = f.event_id)
    ORDER BY h.org_id
  LOOP
    EXIT WHEN v_left <= 0;
    -- The first seal that stays, within the batch.
    SELECT s.seq INTO v_stop
    FROM audit.seals s
    WHERE s.org_id = c.org AND s.seq >= c.first AND s.seq < c.first + v_left
      AND (s.occurred_at >= c.floor OR s.occurred_at <@ v_limbo
           OR EXISTS (SELECT FROM audit.stored_events e
                      WHERE e.org_id = s.org_id AND e.occurred_at = s.occurred_at AND e.id = s.event_id))
    ORDER BY s.seq
    LIMIT 1;
    SELECT max(s.seq) INTO v_last
    FROM audit.seals s WHERE s.org_id = c.org AND s.seq >= c.first AND s.seq < coalesce(v_stop, c.first + v_left);
    SELECT s.hash INTO v_hash FROM audit.seals s WHERE s.org_id = c.org AND s.seq = v_last;
    DELETE FROM audit.seals s WHERE s.org_id = c.org AND s.seq <= v_last;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;
    org_id := c.org; seq := v_last; hash := v_hash;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION audit.prune_seals(integer) IS
  'For the sealer: removes seals of events retention removed, oldest first, and returns per org the last one removed (to sign).';
