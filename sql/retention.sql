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
  FROM regexp_match(parse_leaf.leaf, '^events_(free|team|enterprise)_p([0-9]{8})$') m
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
-- audit.premake_horizon.
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
    AND to_regclass('audit.' || audit.leaf_name(t.tier, d.day::timestamp AT TIME ZONE 'UTC')) IS NULL
  ORDER BY d.day, t.retention, t.tier;
END;
COMMENT ON FUNCTION audit.missing_leaves(integer, timestamptz) IS
  'Leaves of every tier from today (UTC, as of now) to ahead days later, none past audit.premake_horizon(), that do not exist yet.';

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

-- audit.retier_scope says where re-tiering a plan change puts its org's
-- events, as of `now`:
--   tier     the tier of the org's current plan (cloud.orgs.plan; the
--            change's to_tier if the org is gone), never the to_tier of an
--            earlier change;
--   floor    events older than this are removed, not moved: what that plan
--            does not retain, and what any plan change of the org already let
--            expire (keep_since);
--   sources  the tiers that may still hold events to move: the old tier of
--            this change and of the org's earlier changes still pending
--            (changes made between two passes are re-tiered as one).
-- In a source that is the org's tier itself, only the events below the floor
-- are out of place (audit.retier_below).
CREATE OR REPLACE FUNCTION audit.retier_scope(change_id bigint, now timestamptz DEFAULT NULL)
RETURNS TABLE (tier text, floor timestamptz, sources text[])
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT t.tier,
         greatest(coalesce(retier_scope.now, pg_catalog.now()) - t.retention,
                  (SELECT max(k.keep_since) FROM audit.plan_changes k WHERE k.org_id = c.org_id)),
         ARRAY(SELECT DISTINCT p.from_tier FROM audit.plan_changes p
               WHERE p.org_id = c.org_id AND p.id <= c.id AND (p.retiered_at IS NULL OR p.id = c.id))
  FROM audit.plan_changes c
  LEFT JOIN cloud.orgs o ON o.id = c.org_id
  JOIN audit.tiers t ON t.tier = coalesce(o.plan, c.to_tier)
  WHERE c.id = retier_scope.change_id;
END;
COMMENT ON FUNCTION audit.retier_scope(bigint, timestamptz) IS
  'For a plan change: the tier its org''s events go to (the current plan''s), the floor below which they are removed, and the tiers they may still be in.';

-- audit.retier_below: in a source tier of a re-tier, the org's events older
-- than this are still to be moved or removed: all of them in an old tier,
-- those below the floor in the org's own tier.
CREATE OR REPLACE FUNCTION audit.retier_below(source text, tier text, floor timestamptz)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN source = tier THEN floor ELSE 'infinity'::timestamptz END;
COMMENT ON FUNCTION audit.retier_below(text, text, timestamptz) IS
  'Re-tiering: in a source tier, the org''s events older than this are still to be moved or removed.';

-- audit.leaf_needed_by: a plan change not re-tiered yet that still needs
-- events of the leaf of `tier` ending at `range_end`: a change out of that
-- tier whose org's floor (audit.retier_scope) is below the leaf's end, so
-- that its re-tier moves some of the leaf's events to the org's new tier.
-- NULL if there is none. Such a leaf is not dropped before the change is
-- re-tiered, even once its own tier's retention has passed: after an
-- upgrade, the org keeps what the old plan still kept at the change.
CREATE OR REPLACE FUNCTION audit.leaf_needed_by(tier text, range_end timestamptz, now timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT min(p.id)
  FROM audit.plan_changes p
  CROSS JOIN LATERAL audit.retier_scope(p.id, leaf_needed_by.now) s
  WHERE p.retiered_at IS NULL AND p.from_tier = leaf_needed_by.tier AND s.floor < leaf_needed_by.range_end;
END;
COMMENT ON FUNCTION audit.leaf_needed_by(text, timestamptz, timestamptz) IS
  'A plan change not re-tiered yet that still needs events of a leaf (of a tier, ending at range_end), or NULL: the leaf is not dropped before that change is re-tiered.';

-- audit.expired_leaves lists the leaves whose whole range is past their
-- tier's retention as of `now`, and those beyond audit.premake_horizon (made
-- by an older version that let a caller premake from any clock:
-- audit.drop_leaf drops them if empty), in the order the worker retires them: per
-- tier, first a detach left pending (a tier table allows only one), then
-- tables left detached but not dropped, then attached leaves, oldest first.
-- It leaves out a leaf that a plan change not re-tiered yet still needs
-- (audit.leaf_needed_by). detach_sql is the statement the worker runs, as
-- audit_owner, for an attached leaf.
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
  FROM (
    SELECT p.tier, p.leaf, p.range_start, p.range_end, p.expires_at,
           CASE WHEN p.detach_pending THEN 'detach pending' ELSE 'attached' END AS state
    FROM audit.partitions p
    UNION ALL
    SELECT l.tier, c.relname::text, l.day::timestamp AT TIME ZONE 'UTC', (l.day + 1)::timestamp AT TIME ZONE 'UTC',
           (l.day + 1)::timestamp AT TIME ZONE 'UTC' + t.retention, 'detached'
    FROM pg_catalog.pg_class c
    CROSS JOIN LATERAL audit.parse_leaf(c.relname::text) l
    JOIN audit.tiers t ON t.tier = l.tier
    WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
  ) x
  WHERE (x.expires_at <= coalesce(expired_leaves.now, pg_catalog.now())
         AND audit.leaf_needed_by(x.tier, x.range_end, expired_leaves.now) IS NULL)
     OR x.range_start > audit.premake_horizon()::timestamp AT TIME ZONE 'UTC'
  ORDER BY x.tier, CASE x.state WHEN 'detach pending' THEN 0 WHEN 'detached' THEN 1 ELSE 2 END, x.range_start;
END;
COMMENT ON FUNCTION audit.expired_leaves(timestamptz) IS
  'Leaves wholly past their tier''s retention as of now and needed by no pending plan change, or beyond the premake horizon: attached, pending a concurrent detach, or detached and not dropped; with the DETACH statement for attached ones.';

-- audit.drop_leaf retires an expired leaf as far as a function can: it
-- finishes a concurrent detach left pending (DETACH ... FINALIZE) and drops
-- a detached leaf. It returns what it found or did: 'attached' (detach it
-- first), 'dropped', 'gone' (no such table), or 'kept' (a leaf beyond
-- audit.premake_horizon that holds events: for a person to look at). Refuses
-- a leaf that has not expired and is not beyond the horizon, one a plan
-- change not re-tiered yet still needs (audit.leaf_needed_by), and a clock
-- later than the database's.
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
  v_change := CASE WHEN NOT v_far THEN audit.leaf_needed_by(v_tier, v_end, v_now) END;
  IF v_change IS NOT NULL THEN
    RAISE EXCEPTION 'retention: leaf % may hold events that plan change % still has to move to its org''s new tier; not before it is re-tiered',
      drop_leaf.leaf, v_change
      USING ERRCODE = 'AL013', HINT = 'A pass re-tiers before it drops; the leaf goes in the pass that finishes the change.';
  END IF;
  SELECT true, coalesce(i.inhdetachpending, false), i.inhrelid IS NOT NULL INTO v_found, v_pending, v_attached
  FROM pg_catalog.pg_class c
  LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = ('audit.events_' || v_tier)::regclass
  WHERE c.relnamespace = 'audit'::regnamespace AND c.relname = drop_leaf.leaf AND c.relkind = 'r';
  IF v_found IS NULL THEN
    RETURN 'gone';
  ELSIF v_attached AND NOT v_pending THEN
    RETURN 'attached';
  ELSIF v_pending THEN
    -- Waits, holding the leaf, for transactions that may still see it.
    EXECUTE format('ALTER TABLE audit.%I DETACH PARTITION audit.%I FINALIZE', 'events_' || v_tier, drop_leaf.leaf);
  END IF;
  EXECUTE format('DROP TABLE audit.%I', drop_leaf.leaf);
  RETURN 'dropped';
END
$$;
COMMENT ON FUNCTION audit.drop_leaf(text, timestamptz) IS
  'Drops an expired leaf, or an empty one beyond the premake horizon, once detached, finishing a pending concurrent detach first; returns attached, dropped, gone or kept.';

-- audit.retier_next finds the oldest event of an org at or after `after`
-- that re-tiering still has to move or remove (see audit.retier_scope), and
-- the tier holding it; no row when none is left. One index probe per source.
CREATE OR REPLACE FUNCTION audit.retier_next(org_id uuid, sources text[], tier text, floor timestamptz,
                                             after timestamptz DEFAULT '-infinity')
RETURNS TABLE (source text, oldest timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_source text;
  v_at     timestamptz;
BEGIN
  FOREACH v_source IN ARRAY retier_next.sources LOOP
    EXECUTE format('SELECT min(e.occurred_at) FROM audit.%I e WHERE e.org_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3',
                   'events_' || v_source)
      INTO v_at USING retier_next.org_id, retier_next.after, audit.retier_below(v_source, retier_next.tier, retier_next.floor);
    IF v_at < oldest OR (oldest IS NULL AND v_at IS NOT NULL) THEN
      source := v_source;
      oldest := v_at;
    END IF;
  END LOOP;
  IF oldest IS NOT NULL THEN
    RETURN NEXT;
  END IF;
END
$$;
COMMENT ON FUNCTION audit.retier_next(uuid, text[], text, timestamptz, timestamptz) IS
  'Re-tiering: the oldest event of an org (at or after `after`) still to be moved or removed, and its tier.';

-- audit.retier_ready: whether a plan change may be re-tiered now: not
-- before every transaction that could still write the org's events to an
-- old tier has ended (the oldest running transaction is younger than this
-- change and than the org's earlier changes still pending).
CREATE OR REPLACE FUNCTION audit.retier_ready(change_id bigint, now timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT c.changed_at <= coalesce(retier_ready.now, pg_catalog.now())
     AND NOT EXISTS (SELECT FROM audit.plan_changes p
                     WHERE p.org_id = c.org_id AND p.id <= c.id AND (p.retiered_at IS NULL OR p.id = c.id)
                       AND p.changed_xid >= pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()))
  FROM audit.plan_changes c
  WHERE c.id = retier_ready.change_id;
END;
COMMENT ON FUNCTION audit.retier_ready(bigint, timestamptz) IS
  'Whether a plan change may be re-tiered: no transaction that could write to an old tier of the org is left.';

-- audit.pending_plan_changes lists the plan changes to re-tier, with
-- whether each is ready and how many events it would move and remove. Only
-- an org's latest change is listed (audit.retier takes no other): while it
-- is not re-tiered, and for a day after if its old tier holds events of the
-- org again. A transaction that read the org's plan just before the change
-- but wrote after the worker checked (a REPEATABLE READ one, say) put them
-- there; the next batch moves them. The other changes are not read: the
-- candidates come from plan_changes_pending_idx and
-- plan_changes_retiered_at_idx, and only theirs are counted.
CREATE OR REPLACE FUNCTION audit.pending_plan_changes(now timestamptz DEFAULT NULL)
RETURNS TABLE (id bigint, org_id uuid, from_tier text, to_tier text, changed_at timestamptz,
               keep_from timestamptz, ready boolean, to_move bigint, to_remove bigint)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  WITH candidates AS MATERIALIZED (
    SELECT r.id, r.org_id, r.from_tier, r.changed_at, r.retiered_at
    FROM (
      SELECT p.* FROM audit.plan_changes p WHERE p.retiered_at IS NULL
      UNION ALL
      SELECT p.* FROM audit.plan_changes p
      WHERE p.retiered_at > coalesce(pending_plan_changes.now, pg_catalog.now()) - interval '1 day'
    ) r
    WHERE r.id = (SELECT max(l.id) FROM audit.plan_changes l WHERE l.org_id = r.org_id)
  )
  SELECT c.id, c.org_id, c.from_tier, s.tier, c.changed_at, s.floor,
         audit.retier_ready(c.id, pending_plan_changes.now),
         n.to_move, n.to_remove
  FROM candidates c
  CROSS JOIN LATERAL audit.retier_scope(c.id, pending_plan_changes.now) s
  CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE e.occurred_at >= s.floor) AS to_move,
           count(*) FILTER (WHERE e.occurred_at < s.floor) AS to_remove
    FROM (
{{- range $i, $tier := list "free" "team" "enterprise" }}
      {{ if $i }}UNION ALL {{ end }}SELECT x.occurred_at FROM audit.events_{{ $tier }} x
      WHERE '{{ $tier }}' = ANY (s.sources) AND x.org_id = c.org_id
        AND x.occurred_at < audit.retier_below('{{ $tier }}', s.tier, s.floor)
{{- end }}
    ) e
  ) n
  WHERE c.retiered_at IS NULL OR n.to_move + n.to_remove > 0
  ORDER BY c.id;
END;
COMMENT ON FUNCTION audit.pending_plan_changes(timestamptz) IS
  'Plan changes (each an org''s latest) whose org still has events out of place (yet, or again after a late write): whether each is ready, and the events it would move and remove.';

-- Replaced by audit.retier_scope.
DROP FUNCTION IF EXISTS audit.retier_floor(bigint, timestamptz);

-- audit.retier moves one batch of an org's events for its latest plan
-- change (audit.retier_scope): from the oldest leaf holding any still out of
-- place, those the floor keeps go to the table of the org's current tier (in
-- the same transaction: a reader sees them in one table or the other, never
-- both or neither; one there already, imported again say, is kept and its
-- old copy removed), the rest are removed. Events are immutable: for the
-- length of this transaction only, and only on that leaf, audit_owner holds
-- DELETE, and a row of audit.retier_marks lets the immutability trigger pass
-- (an error rolls both back). GRANT and REVOKE take no lock on the leaf:
-- inserts and reads go on (docs/retention.md).
--
-- It refuses (AL013) a change that is not the org's latest (a later one
-- decides where the events go), one not ready, and one re-tiered already
-- whose old tier holds none of the org's events: replaying an old change
-- moves and removes nothing. The batch that leaves nothing out of place
-- returns done, and sets retiered_at on this change (kept if a late write
-- brought it back) and on the org's earlier changes still pending.
CREATE OR REPLACE FUNCTION audit.retier(change_id bigint, batch integer DEFAULT 5000, now timestamptz DEFAULT NULL)
RETURNS TABLE (moved bigint, removed bigint, done boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_now    timestamptz := audit.retention_clock(retier.now, true);
  c        audit.plan_changes;
  v_latest bigint;
  v_tier   text;
  v_floor  timestamptz;
  v_srcs   text[];
  v_from   text;
  v_oldest timestamptz;
  v_below  timestamptz;
  v_leaf   text;
  v_moved  bigint := 0;
  v_gone   bigint := 0;
  v_more   boolean := false;
BEGIN
  IF batch IS NULL OR batch NOT BETWEEN 1 AND 100000 THEN
    RAISE EXCEPTION 'retention: re-tier batch of %: want 1 to 100000', batch USING ERRCODE = 'AL014';
  END IF;
  SELECT * INTO c FROM audit.plan_changes p WHERE p.id = retier.change_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'retention: no plan change %', retier.change_id USING ERRCODE = 'AL012';
  END IF;
  SELECT max(p.id) INTO v_latest FROM audit.plan_changes p WHERE p.org_id = c.org_id;
  IF v_latest <> c.id THEN
    RAISE EXCEPTION 'retention: plan change % is not org %''s latest (%); only the latest is re-tiered', c.id, c.org_id, v_latest
      USING ERRCODE = 'AL013',
            HINT = 'The latest change moves the org''s events to its current plan''s tier, earlier changes still pending included.';
  ELSIF NOT audit.retier_ready(c.id, v_now) THEN
    RAISE EXCEPTION 'retention: plan change % is not ready to re-tier', c.id USING ERRCODE = 'AL013',
      HINT = 'A transaction that may still write to an old tier of the org is running.';
  END IF;

  SELECT s.tier, s.floor, s.sources INTO v_tier, v_floor, v_srcs FROM audit.retier_scope(c.id, v_now) s;
  SELECT n.source, n.oldest INTO v_from, v_oldest FROM audit.retier_next(c.org_id, v_srcs, v_tier, v_floor) n;
  IF v_oldest IS NULL AND c.retiered_at IS NOT NULL THEN
    RAISE EXCEPTION 'retention: plan change % is re-tiered already, and tier % holds none of org %''s events',
      c.id, c.from_tier, c.org_id USING ERRCODE = 'AL013';
  ELSIF v_oldest IS NOT NULL THEN
    v_below := audit.retier_below(v_from, v_tier, v_floor);
    v_leaf := audit.leaf_name(v_from, v_oldest);
    IF date_trunc('day', v_oldest AT TIME ZONE 'UTC') + interval '1 day' > v_floor AT TIME ZONE 'UTC' THEN
      PERFORM audit.make_leaf(v_tier, (v_oldest AT TIME ZONE 'UTC')::date);
    END IF;
    EXECUTE format('GRANT DELETE ON audit.%I TO audit_owner', v_leaf);
    INSERT INTO audit.retier_marks (xid, change_id) VALUES (pg_current_xact_id(), c.id);
    EXECUTE format($sql$
      WITH gone AS (
        DELETE FROM audit.%1$I e
        WHERE (e.org_id, e.occurred_at, e.id) IN (
          SELECT k.org_id, k.occurred_at, k.id FROM audit.%1$I k
          WHERE k.org_id = $1 AND k.occurred_at < $4 ORDER BY k.occurred_at, k.id LIMIT $2)
        RETURNING e.*
      ), kept AS (
        INSERT INTO audit.%2$I SELECT g.* FROM gone g WHERE g.occurred_at >= $3 ON CONFLICT DO NOTHING
      )
      SELECT count(*) FILTER (WHERE g.occurred_at >= $3), count(*) FROM gone g$sql$, v_leaf, 'events_' || v_tier)
      INTO v_moved, v_gone USING c.org_id, batch, v_floor, v_below;
    DELETE FROM audit.retier_marks m WHERE m.xid = pg_current_xact_id();
    EXECUTE format('REVOKE DELETE ON audit.%I FROM audit_owner', v_leaf);

    UPDATE audit.plan_changes
       SET moved_rows = coalesce(moved_rows, 0) + v_moved, removed_rows = coalesce(removed_rows, 0) + v_gone - v_moved
     WHERE plan_changes.id = c.id;
    -- Anything left: in this leaf (a cheap look), else in any source.
    EXECUTE format('SELECT EXISTS (SELECT FROM audit.%I e WHERE e.org_id = $1 AND e.occurred_at < $2)', v_leaf)
      INTO v_more USING c.org_id, v_below;
    IF NOT v_more THEN
      v_more := EXISTS (SELECT FROM audit.retier_next(c.org_id, v_srcs, v_tier, v_floor, v_oldest));
    END IF;
  END IF;

  IF NOT v_more THEN
    UPDATE audit.plan_changes p
       SET retiered_at = v_now, moved_rows = coalesce(p.moved_rows, 0), removed_rows = coalesce(p.removed_rows, 0)
     WHERE p.org_id = c.org_id AND p.retiered_at IS NULL;
  END IF;
  RETURN QUERY SELECT v_moved, v_gone - v_moved, NOT v_more;
END
$$;
COMMENT ON FUNCTION audit.retier(bigint, integer, timestamptz) IS
  'Moves one batch of an org''s events, for its latest plan change, to its current plan''s tier (removing those that plan no longer retains); done when none is left out of place.';

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
