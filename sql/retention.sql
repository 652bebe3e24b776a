-- Retention: the maintenance functions the retention worker (retention/)
-- calls as audit_maintainer, see docs/retention.md. Each takes the instant it
-- acts at as `now` (NULL: the database clock) so tests can move time.
-- Errors carry SQLSTATEs of class AL:
--   AL011 clock later than the database clock, for a step that drops or removes
--   AL012 no such leaf or plan change      AL013 not yet: not expired, not ready
--   AL014 argument out of range
--
-- The one step the worker cannot take through a function is
-- ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY: it cannot run inside a
-- function or a transaction block, and needs the tier table's owner. The
-- worker runs the statement audit.expired_leaves hands it, as audit_owner;
-- everything before and after it is here.

-- audit.retention_clock is the instant a pass acts at: `now`, or the database
-- clock. A pass that drops or removes events (destructive) may not claim to
-- be later than the database clock, by any amount: nobody can drop a leaf or
-- remove an event even a minute early by lying about the time. (The worker
-- passes NULL, the database clock, unless told otherwise.) Previews may use
-- any time.
CREATE OR REPLACE FUNCTION audit.retention_clock(now timestamptz DEFAULT NULL, destructive boolean DEFAULT true)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF destructive AND retention_clock.now > pg_catalog.now() THEN
    RAISE EXCEPTION 'retention: refusing to drop or remove events as of %, later than the database clock (%)',
      retention_clock.now, pg_catalog.now()
      USING ERRCODE = 'AL011',
            HINT = 'A pass that drops or removes events may not run ahead of the database clock; use a dry run to preview.';
  END IF;
  RETURN coalesce(retention_clock.now, pg_catalog.now());
END
$$;
COMMENT ON FUNCTION audit.retention_clock(timestamptz, boolean) IS
  'The instant a retention step acts at (now, or the database clock); refuses a destructive step dated later than the database clock.';

-- audit.parse_leaf reads the tier and UTC day out of a leaf's name; no row
-- if the name is not a leaf's.
CREATE OR REPLACE FUNCTION audit.parse_leaf(leaf text)
RETURNS TABLE (tier text, day date)
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
  SELECT m[1], to_date(m[2], 'YYYYMMDD')
  FROM regexp_match(parse_leaf.leaf, '^events_({{ join "|" $.tiers }})_p([0-9]{8})$') m
  WHERE m IS NOT NULL;
END;
COMMENT ON FUNCTION audit.parse_leaf(text) IS 'Tier and UTC day of a leaf, from its name events_<tier>_pYYYYMMDD.';

-- audit.premake_horizon is the last UTC day a leaf may be made for: the
-- database clock's day plus 90 days, whatever clock a caller passes. Each
-- leaf costs every read of a tier table a lock and the planner a look, so a
-- maintainer claiming a clock years ahead must not be able to make thousands
-- of them; a pass drops empty leaves found beyond it (audit.expired_leaves).
CREATE OR REPLACE FUNCTION audit.premake_horizon() RETURNS date
LANGUAGE sql
STABLE
RETURN (pg_catalog.now() AT TIME ZONE 'UTC')::date + 90;
COMMENT ON FUNCTION audit.premake_horizon() IS 'The last UTC day a leaf may be made for: the database clock''s day plus 90 days.';

-- audit.missing_leaves lists the leaves of every tier from the UTC day of
-- `now` to `ahead` days later that do not exist yet, none past
-- audit.premake_horizon and none the tier's retention would expire as of
-- the database clock: a clock far in the past must not make thousands of
-- leaves either.
CREATE OR REPLACE FUNCTION audit.missing_leaves(ahead integer DEFAULT 3, now timestamptz DEFAULT NULL)
RETURNS TABLE (tier text, day date, leaf text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT t.tier, d.day, audit.leaf_name(t.tier, d.day::timestamp AT TIME ZONE 'UTC')
  FROM audit.tiers t
  CROSS JOIN LATERAL (
    SELECT (coalesce(missing_leaves.now, pg_catalog.now()) AT TIME ZONE 'UTC')::date + g AS day
    FROM generate_series(0, least(missing_leaves.ahead, 90)) g
  ) d
  WHERE d.day <= audit.premake_horizon()
    AND d.day >= ((pg_catalog.now() AT TIME ZONE 'UTC') - t.retention)::date
    AND to_regclass('audit.' || audit.leaf_name(t.tier, d.day::timestamp AT TIME ZONE 'UTC')) IS NULL
  ORDER BY d.day, t.retention, t.tier;
END;
COMMENT ON FUNCTION audit.missing_leaves(integer, timestamptz) IS
  'Leaves of every tier from today (UTC, as of now) to ahead days later, none past audit.premake_horizon() nor expired by the database clock, that do not exist yet.';

-- audit.premake_leaves makes those leaves and returns the names of the ones
-- it made. Each is attached with SHARE UPDATE EXCLUSIVE on its tier table
-- (audit.make_leaf), which inserts and reads do not wait for.
CREATE OR REPLACE FUNCTION audit.premake_leaves(ahead integer DEFAULT 3, now timestamptz DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  m record;
BEGIN
  IF ahead IS NULL OR ahead NOT BETWEEN 0 AND 90 THEN
    RAISE EXCEPTION 'retention: premake % days ahead: want 0 to 90', ahead USING ERRCODE = 'AL014';
  END IF;
  FOR m IN SELECT * FROM audit.missing_leaves(premake_leaves.ahead, premake_leaves.now) LOOP
    IF audit.make_leaf(m.tier, m.day) THEN
      RETURN NEXT m.leaf;
    END IF;
  END LOOP;
END
$$;
COMMENT ON FUNCTION audit.premake_leaves(integer, timestamptz) IS
  'Makes the leaves of every tier from today (UTC, as of now) to ahead days later; returns the names of those it made.';

-- audit.leaf_states lists every leaf stored, attached to its tier table or
-- not: 'attached', 'detach pending' (a concurrent detach half done) or
-- 'detached' (a table named like a leaf, not a partition: detached and not
-- dropped), with its range and when its tier's retention expires it.
CREATE OR REPLACE FUNCTION audit.leaf_states()
RETURNS TABLE (tier text, leaf text, range_start timestamptz, range_end timestamptz, expires_at timestamptz, state text)
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT p.tier, p.leaf, p.range_start, p.range_end, p.expires_at,
         CASE WHEN p.detach_pending THEN 'detach pending' ELSE 'attached' END
  FROM audit.partitions p
  UNION ALL
  SELECT l.tier, c.relname::text, l.day::timestamp AT TIME ZONE 'UTC', (l.day + 1)::timestamp AT TIME ZONE 'UTC',
         (l.day + 1)::timestamp AT TIME ZONE 'UTC' + t.retention, 'detached'
  FROM pg_catalog.pg_class c
  CROSS JOIN LATERAL audit.parse_leaf(c.relname::text) l
  JOIN audit.tiers t ON t.tier = l.tier
  WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition;
END;
COMMENT ON FUNCTION audit.leaf_states() IS
  'Every leaf stored: attached, detach pending or detached (not dropped), with its range and expiry.';

-- audit.expired_leaves lists the leaves whose whole range is past their
-- tier's retention as of `now`, and those beyond audit.premake_horizon (made
-- by an older version that let a caller premake from any clock:
-- audit.drop_leaf drops them if empty), in the order the worker retires them: per
-- tier, first a detach left pending (a tier table allows only one), then
-- tables left detached but not dropped, then attached leaves, oldest first.
-- It leaves out a leaf that a plan change not re-tiered yet still needs,
-- for one pass at most (audit.leaf_needed_by). detach_sql is the statement
-- the worker runs, as audit_owner, for an attached leaf.
CREATE OR REPLACE FUNCTION audit.expired_leaves(now timestamptz DEFAULT NULL)
RETURNS TABLE (tier text, leaf text, range_start timestamptz, expires_at timestamptz, state text, detach_sql text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT x.tier, x.leaf, x.range_start, x.expires_at, x.state,
         CASE WHEN x.state = 'attached'
              THEN format('ALTER TABLE audit.%I DETACH PARTITION audit.%I CONCURRENTLY', 'events_' || x.tier, x.leaf)
         END
  FROM audit.leaf_states() x
  WHERE (x.expires_at <= coalesce(expired_leaves.now, pg_catalog.now())
         AND audit.leaf_needed_by(x.tier, x.range_end, expired_leaves.now) IS NULL)
     OR x.range_start > audit.premake_horizon()::timestamp AT TIME ZONE 'UTC'
  ORDER BY x.tier, CASE x.state WHEN 'detach pending' THEN 0 WHEN 'detached' THEN 1 ELSE 2 END, x.range_start;
END;
COMMENT ON FUNCTION audit.expired_leaves(timestamptz) IS
  'Leaves wholly past their tier''s retention as of now and needed by no pending plan change (for one pass at most), or beyond the premake horizon: attached, pending a concurrent detach, or detached and not dropped; with the DETACH statement for attached ones.';

-- audit.retention_holdups lists the leaves past their tier's retention as of
-- `now` that are still stored, and what keeps each: 'plan change' (one not
-- re-tiered yet needs it: until the next pass, change_id), 'transactions'
-- (for a detach left pending, the sessions holding its tier table, which
-- finishing it waits for; for a detached leaf, those with a plan change not
-- committed yet, which its drop waits for: their pids), or 'nothing' (the
-- next pass retires it). For people and /metrics, as audit_reader: the pids
-- are to look up in pg_stat_activity.
CREATE OR REPLACE FUNCTION audit.retention_holdups(now timestamptz DEFAULT NULL)
RETURNS TABLE (tier text, leaf text, expires_at timestamptz, state text, held_by text, change_id bigint, pids integer[])
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT x.tier, x.leaf, x.expires_at, x.state,
         CASE WHEN x.change_id IS NOT NULL THEN 'plan change'
              WHEN cardinality(x.pids) > 0 THEN 'transactions'
              ELSE 'nothing' END,
         x.change_id, x.pids
  FROM (
    SELECT l.tier, l.leaf, l.expires_at, l.state,
           CASE WHEN l.state = 'attached' THEN audit.leaf_needed_by(l.tier, l.range_end, retention_holdups.now) END AS change_id,
           ARRAY(SELECT DISTINCT k.pid FROM pg_catalog.pg_locks k
                 WHERE l.state <> 'attached' AND k.granted AND k.locktype = 'relation' AND k.pid <> pg_catalog.pg_backend_pid()
                   AND k.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
                   AND CASE WHEN l.state = 'detached'
                            THEN k.relation = 'audit.plan_changes'::regclass AND k.mode = 'RowExclusiveLock'
                            ELSE k.relation = ('audit.events_' || l.tier)::regclass END
                 ORDER BY 1) AS pids
    FROM audit.leaf_states() l
    WHERE l.expires_at <= coalesce(retention_holdups.now, pg_catalog.now())
  ) x
  ORDER BY x.expires_at, x.tier;
END;
COMMENT ON FUNCTION audit.retention_holdups(timestamptz) IS
  'Leaves past their retention still stored, and what keeps each: a plan change (one pass at most), transactions (their pids), or nothing.';

-- audit.keep_from_leaf copies, out of a leaf already detached from its tier
-- table, the events of every org whose current plan still keeps part of the
-- leaf's day (from the org's floor, audit.retention_floor as of `now`) into
-- the table of that plan's tier, and returns how many. The caller drops the
-- leaf next, in the same transaction. It first holds audit.plan_changes in
-- SHARE mode until then: a plan change committed before (even while the
-- detach waited for readers, or before a crash left the detach pending) is
-- seen and honoured, and one not committed yet waits for the drop and is
-- dated after it (audit.record_plan_change), claiming nothing of the day.
-- So it reads committed: a snapshot taken before the wait would miss them.
-- Only an org that left the leaf's tier can keep any of it: the leaf has
-- expired for that tier. And only one whose change out of it is not
-- re-tiered yet, or was since the leaf's day began, can have events there:
-- a re-tier moves them all, but not out of a leaf detached meanwhile, and a
-- writer that read the old plan may have written that day, long after the
-- change. The orgs that ever left the tier, a list that only grows, would
-- cost a look each (about 80 us).
CREATE OR REPLACE FUNCTION audit.keep_from_leaf(leaf text, tier text, day date, now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  o      record;
  v_any  boolean;
  v_n    bigint;
  v_kept bigint := 0;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'retention: a drop reads the orgs'' plans after waiting for plan changes: it needs READ COMMITTED, not %',
      upper(current_setting('transaction_isolation')) USING ERRCODE = 'AL013';
  END IF;
  LOCK TABLE audit.plan_changes IN SHARE MODE;
  FOR o IN
    SELECT c.org_id, g.plan, f.floor
    FROM (SELECT DISTINCT p.org_id FROM audit.plan_changes p
          WHERE p.from_tier = keep_from_leaf.tier
            AND (p.retiered_at IS NULL OR p.retiered_at >= keep_from_leaf.day::timestamp AT TIME ZONE 'UTC')) c
    JOIN cloud.orgs g ON g.id = c.org_id
    JOIN audit.tiers t ON t.tier = g.plan
    CROSS JOIN LATERAL (SELECT audit.retention_floor(c.org_id, t.retention, keep_from_leaf.now) AS floor) f
    WHERE g.plan <> keep_from_leaf.tier AND f.floor < (keep_from_leaf.day + 1)::timestamp AT TIME ZONE 'UTC'
  LOOP
    EXECUTE format('SELECT EXISTS (SELECT FROM audit.%I e WHERE e.org_id = $1 AND e.occurred_at >= $2)', keep_from_leaf.leaf)
      INTO v_any USING o.org_id, o.floor;
    CONTINUE WHEN NOT v_any;
    PERFORM audit.make_leaf(o.plan, keep_from_leaf.day);
    EXECUTE format('INSERT INTO audit.%I SELECT e.* FROM audit.%I e WHERE e.org_id = $1 AND e.occurred_at >= $2 ON CONFLICT DO NOTHING',
                   'events_' || o.plan, keep_from_leaf.leaf)
      USING o.org_id, o.floor;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_kept := v_kept + v_n;
  END LOOP;
  RETURN v_kept;
END
$$;
COMMENT ON FUNCTION audit.keep_from_leaf(text, text, date, timestamptz) IS
  'Before a detached leaf is dropped: copies the events that their orgs'' current plans still keep to those plans'' tiers; holds plan changes off until the drop commits.';

-- audit.drop_leaf retires an expired leaf as far as a function can: it
-- finishes a concurrent detach left pending (DETACH ... FINALIZE) and drops
-- a detached leaf, keeping first what the orgs' current plans still retain
-- of its day (audit.keep_from_leaf). It returns what it found or did: 'attached' (detach it
-- first), 'dropped', 'gone' (no such table), or 'kept' (a leaf beyond
-- audit.premake_horizon that holds events: for a person to look at). Refuses
-- a leaf that has not expired and is not beyond the horizon, an attached
-- one a plan change not re-tiered yet still needs (audit.leaf_needed_by), and
-- a clock later than the database's.
CREATE OR REPLACE FUNCTION audit.drop_leaf(leaf text, now timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now     timestamptz := audit.retention_clock(drop_leaf.now, true);
  v_tier    text;
  v_end     timestamptz;
  v_expires timestamptz;
  v_change  bigint;
  v_found   boolean;
  v_pending boolean;
  v_attached boolean;
  v_far     boolean;
BEGIN
  SELECT l.tier, (l.day + 1)::timestamp AT TIME ZONE 'UTC', (l.day + 1)::timestamp AT TIME ZONE 'UTC' + t.retention,
         l.day > audit.premake_horizon()
    INTO v_tier, v_end, v_expires, v_far
  FROM audit.parse_leaf(drop_leaf.leaf) l JOIN audit.tiers t ON t.tier = l.tier;
  IF v_tier IS NULL THEN
    RAISE EXCEPTION 'retention: "%" is not the name of a leaf', drop_leaf.leaf
      USING ERRCODE = 'AL012', HINT = 'Leaves are named events_<tier>_pYYYYMMDD.';
  END IF;
  IF v_far THEN
    -- Only a superuser can have put events there (log_event and the import
    -- write no future events): keep them.
    IF to_regclass('audit.' || quote_ident(drop_leaf.leaf)) IS NULL THEN
      RETURN 'gone';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT FROM audit.%I)', drop_leaf.leaf) INTO v_found;
    IF v_found THEN
      RETURN 'kept';
    END IF;
    v_found := NULL;
  ELSIF v_expires > v_now THEN
    RAISE EXCEPTION 'retention: leaf % expires at %, not yet (as of %)', drop_leaf.leaf, v_expires, v_now
      USING ERRCODE = 'AL013';
  END IF;
  SELECT true, coalesce(i.inhdetachpending, false), i.inhrelid IS NOT NULL INTO v_found, v_pending, v_attached
  FROM pg_catalog.pg_class c
  LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = ('audit.events_' || v_tier)::regclass
  WHERE c.relnamespace = 'audit'::regnamespace AND c.relname = drop_leaf.leaf AND c.relkind = 'r';
  IF v_found IS NULL THEN
    RETURN 'gone';
  ELSIF v_attached AND NOT v_pending THEN
    v_change := CASE WHEN NOT v_far THEN audit.leaf_needed_by(v_tier, v_end, v_now) END;
    IF v_change IS NOT NULL THEN
      RAISE EXCEPTION 'retention: leaf % may hold events that plan change % still has to move to its org''s new tier; not before it is re-tiered',
        drop_leaf.leaf, v_change
        USING ERRCODE = 'AL013', HINT = 'A pass re-tiers before it drops; the leaf goes in the pass that finishes the change.';
    END IF;
    RETURN 'attached';
  ELSIF v_pending THEN
    -- Waits, holding the leaf, for transactions that may still see it.
    EXECUTE format('ALTER TABLE audit.%I DETACH PARTITION audit.%I FINALIZE', 'events_' || v_tier, drop_leaf.leaf);
  END IF;
  IF NOT v_far THEN
    PERFORM audit.keep_from_leaf(drop_leaf.leaf, v_tier, (v_end AT TIME ZONE 'UTC')::date - 1, v_now);
  END IF;
  EXECUTE format('DROP TABLE audit.%I', drop_leaf.leaf);
  RETURN 'dropped';
END
$$;
COMMENT ON FUNCTION audit.drop_leaf(text, timestamptz) IS
  'Drops an expired leaf, or an empty one beyond the premake horizon, once detached, finishing a pending concurrent detach first; returns attached, dropped, gone or kept.';

-- audit.record_retention_run records one pass of the worker.
CREATE OR REPLACE FUNCTION audit.record_retention_run(
  started_at     timestamptz,
  clock          timestamptz,
  worker         text,
  leaves_created text[],
  leaves_dropped text[],
  orgs_retiered  uuid[],
  rows_moved     bigint,
  rows_removed   bigint,
  errors         text[]
) RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  INSERT INTO audit.retention_runs (started_at, finished_at, clock, worker, leaves_created, leaves_dropped,
                                    orgs_retiered, rows_moved, rows_removed, errors)
  VALUES (record_retention_run.started_at, clock_timestamp(), record_retention_run.clock,
          left(record_retention_run.worker, 200),
          coalesce(record_retention_run.leaves_created, '{}'), coalesce(record_retention_run.leaves_dropped, '{}'),
          coalesce(record_retention_run.orgs_retiered, '{}'), coalesce(record_retention_run.rows_moved, 0),
          coalesce(record_retention_run.rows_removed, 0), coalesce(record_retention_run.errors, '{}'))
  RETURNING id;
END;
COMMENT ON FUNCTION audit.record_retention_run(timestamptz, timestamptz, text, text[], text[], uuid[], bigint, bigint, text[]) IS
  'Records one pass of the retention worker in audit.retention_runs; returns its id.';
