-- Re-tiering: moving an org's events to its current plan's tier after a plan
-- change, the functions the retention worker (retention/) calls as
-- audit_maintainer, see docs/retention.md. Installed before retention.sql,
-- whose audit.expired_leaves asks audit.leaf_needed_by. Each takes the
-- instant it acts at as `now` (NULL: the database clock); SQLSTATEs as in
-- retention.sql.

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
         audit.retention_floor(c.org_id, t.retention, coalesce(retier_scope.now, pg_catalog.now())),
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
-- NULL if there is none, and once a pass has run since the leaf expired: a
-- change holds an expired leaf back one pass at most, for the re-tier to
-- move its events while reads still see them; after that the drop copies
-- what the org's plan keeps (audit.keep_from_leaf).
CREATE OR REPLACE FUNCTION audit.leaf_needed_by(tier text, range_end timestamptz, now timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT min(p.id)
  FROM audit.plan_changes p
  CROSS JOIN LATERAL audit.retier_scope(p.id, leaf_needed_by.now) s
  WHERE p.retiered_at IS NULL AND p.from_tier = leaf_needed_by.tier AND s.floor < leaf_needed_by.range_end
    AND NOT EXISTS (SELECT FROM (SELECT r.clock FROM audit.retention_runs r ORDER BY r.id DESC LIMIT 1) r
                    JOIN audit.tiers t ON t.tier = leaf_needed_by.tier
                    WHERE r.clock >= leaf_needed_by.range_end + t.retention);
END;
COMMENT ON FUNCTION audit.leaf_needed_by(text, timestamptz, timestamptz) IS
  'A plan change not re-tiered yet that still needs events of a leaf (of a tier, ending at range_end), or NULL: the leaf is not dropped before that change is re-tiered, or a pass has run since the leaf expired.';

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

-- audit.held_xids lists what the other sessions of this database hold, as
-- full transaction ids: each one's running transaction (xid) and the oldest
-- transaction its snapshots may not see (xmin), and each prepared
-- transaction. Only sessions of this database can read its plans or write
-- its events; the retention worker's own session is left out.
CREATE OR REPLACE FUNCTION audit.held_xids()
RETURNS TABLE (pid integer, xid xid8, xmin xid8)
LANGUAGE sql
STABLE
BEGIN ATOMIC
  WITH n AS (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::numeric AS next)
  SELECT h.pid,
         (n.next - ((n.next % 4294967296) - h.xid::text::numeric + 4294967296) % 4294967296)::text::xid8,
         (n.next - ((n.next % 4294967296) - h.xmin::text::numeric + 4294967296) % 4294967296)::text::xid8
  FROM n, (
    SELECT a.pid, a.backend_xid AS xid, a.backend_xmin AS xmin
    FROM pg_catalog.pg_stat_activity a
    WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
      AND a.pid <> pg_catalog.pg_backend_pid()
      AND (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL)
    UNION ALL
    SELECT NULL, p.transaction, NULL
    FROM pg_catalog.pg_prepared_xacts p
    WHERE p.database = pg_catalog.current_database()
  ) h;
END;
COMMENT ON FUNCTION audit.held_xids() IS
  'The running transactions and snapshot horizons the other sessions of this database hold, and its prepared transactions, as full transaction ids.';

-- audit.fence_plan_changes fences the plan changes not re-tiered yet that no
-- snapshot held in this database can miss any more: it sets fence_xid to a
-- transaction id assigned after it looked. A writer that read the org's plan
-- before the change (a REPEATABLE READ transaction, or a statement racing
-- the change) holds such a snapshot until its log_event is done; once it no
-- longer does, the transaction that wrote the event has an id below the
-- fence. So once no transaction older than the fence is running
-- (audit.retier_ready), no event of the org can reach an old tier any more.
-- It looks (first statement) before it takes its own transaction id (second):
-- it must run in a transaction of its own. Returns how many changes are
-- fenced and still waiting for older transactions to end.
CREATE OR REPLACE FUNCTION audit.fence_plan_changes()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ids     bigint[];
  v_waiting integer;
BEGIN
  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
    RAISE EXCEPTION 'retention: fence plan changes in a transaction of its own' USING ERRCODE = 'AL013',
      HINT = 'The fence is a transaction id taken after looking at the sessions; this transaction has one already.';
  END IF;
  SELECT array_agg(c.id) INTO v_ids
  FROM audit.plan_changes c
  WHERE c.retiered_at IS NULL AND c.fence_xid IS NULL
    AND NOT EXISTS (
      SELECT FROM audit.plan_changes p, audit.held_xids() h
      WHERE p.org_id = c.org_id AND p.id <= c.id AND (p.retiered_at IS NULL OR p.id = c.id)
        AND h.xmin <= p.changed_xid);
  UPDATE audit.plan_changes c SET fence_xid = pg_current_xact_id() WHERE c.id = ANY (v_ids);
  PERFORM pg_stat_clear_snapshot(); -- look at the sessions again, not as the first statement saw them
  SELECT count(*) INTO v_waiting
  FROM audit.plan_changes c
  WHERE c.retiered_at IS NULL AND c.fence_xid IS NOT NULL
    AND EXISTS (SELECT FROM audit.held_xids() h WHERE h.xid < c.fence_xid);
  RETURN v_waiting;
END
$$;
COMMENT ON FUNCTION audit.fence_plan_changes() IS
  'Fences the pending plan changes no snapshot of this database can miss any more; returns how many fenced changes still wait for older transactions.';

-- audit.retier_ready: whether a plan change may be re-tiered now: it is
-- fenced (audit.fence_plan_changes) and no transaction older than its fence
-- is running in this database, so no writer can still put the org's events
-- in an old tier; an earlier change of the org has an older fence or none
-- (the fence looked at all of them).
CREATE OR REPLACE FUNCTION audit.retier_ready(change_id bigint, now timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
STABLE
BEGIN ATOMIC
  SELECT c.changed_at <= coalesce(retier_ready.now, pg_catalog.now())
     AND c.fence_xid IS NOT NULL
     AND NOT EXISTS (SELECT FROM audit.held_xids() h WHERE h.xid < c.fence_xid)
  FROM audit.plan_changes c
  WHERE c.id = retier_ready.change_id;
END;
COMMENT ON FUNCTION audit.retier_ready(bigint, timestamptz) IS
  'Whether a plan change may be re-tiered: fenced, and no transaction older than the fence is left, so none can write to an old tier of the org.';

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
{{- range $i, $tier := $.tiers }}
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

