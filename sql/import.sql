-- Bulk import (`auditlog import`, docs/import.md): backfilling history from
-- another system, for audit_maintainer, which has no DML on the tier tables.
--
-- One batch is one transaction of the importing session:
--   SELECT audit.import_begin();               -- makes the staging table once per session
--   COPY pg_temp.import_rows (...) FROM STDIN; -- the maintainer may only INSERT into it
--   SELECT * FROM audit.import_batch();        -- checks every row, then loads all or nothing
--
-- The staging table is a temporary table of the session, owned by
-- audit_owner: batches of concurrent importers never mix, nothing staged
-- outlives its transaction (ON COMMIT DELETE ROWS), and it is written without
-- WAL. Every row is checked by audit.event_fault, the rules audit.log_event
-- enforces, plus what only an imported row can get wrong (its time, its
-- target and actor types, a duplicate in the batch). A batch with a bad row
-- loads nothing and audit.import_batch returns every bad row; otherwise the
-- rows go to the tier table of their org's current plan, except rows older
-- than what the org's plan retains and rows already stored (in any tier
-- table), which are skipped and returned too. A row without an id takes the
-- one its values give (audit.event_content_id), so an import run again
-- finds it stored. Errors carry SQLSTATEs of class AL: those of
-- audit.log_event (AL001-AL007) and
--   AL020 the staging table is missing or not the audit log's
--   AL021 occurred_at in the future
--   AL022 target_type is not the catalog's for the action
--   AL023 actor_type does not match the actor
--   AL024 the same event (id, org_id, occurred_at) twice in one batch

-- audit.jsonb_bytes is the size of a jsonb value as audit.log_event measures
-- its metadata argument: in memory, uncompressed. A value read from a table
-- may have been compressed or moved out of line, which pg_column_size would
-- report instead; re-serialising it (|| '{}') gives the in-memory size. Small
-- uncompressed values, far below the limit, are measured as they are.
CREATE OR REPLACE FUNCTION audit.jsonb_bytes(value jsonb) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_column_compression(value) IS NULL AND pg_column_size(value) < 2000 THEN pg_column_size(value)
            ELSE pg_column_size(value || '{}'::jsonb) END;
COMMENT ON FUNCTION audit.jsonb_bytes(jsonb) IS 'Size of a jsonb value in memory, uncompressed, as audit.log_event limits metadata.';

-- audit.event_content_id is the id the bulk import gives a row that has
-- none: a UUID of version 8 (RFC 9562) holding 120 bits of the SHA-256 of
-- the row's values, so the same row imported twice has the same id and is
-- stored once, and rows that differ in any value have different ids. The
-- values are org_id, occurred_at (as microseconds since 1970: the same
-- instant in any notation or zone), action, target_id, actor_id,
-- actor_email, ip, user_agent, request_id and metadata (jsonb: key order and
-- spacing do not count; none is {}), written as a row literal in each type's
-- own output, which no setting changes. target_type and actor_type are left
-- out: an accepted row's follow from its action and actor. Ids already
-- given depend on this formula: changed, it would make a file imported
-- before and again after store its rows twice.
CREATE OR REPLACE FUNCTION audit.event_content_id(
  org_id uuid, occurred_at timestamptz, action text, target_id text, actor_id uuid, actor_email text,
  ip inet, user_agent text, request_id text, metadata jsonb
) RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
RETURN overlay(overlay(encode(substring(sha256(convert_to(
         ROW(org_id, (extract(epoch FROM occurred_at) * 1000000)::bigint, action, target_id, actor_id, actor_email,
             ip, user_agent, request_id, coalesce(metadata, '{}'::jsonb))::text,
         'UTF8')) FOR 16), 'hex') PLACING '8' FROM 13) PLACING '8' FROM 17)::uuid;
COMMENT ON FUNCTION audit.event_content_id(uuid, timestamptz, text, text, uuid, text, inet, text, text, jsonb) IS
  'Bulk import: the id of an imported row that has none, derived from its values (a version 8 UUID of their SHA-256). See docs/import.md.';

-- audit.import_staging_ok says whether this session's pg_temp.import_rows is
-- the staging table audit.import_begin made (not one the caller made, which
-- could be a view running the caller's code as audit_owner).
CREATE OR REPLACE FUNCTION audit.import_staging_ok() RETURNS boolean
LANGUAGE sql STABLE
BEGIN ATOMIC
  SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
                 WHERE c.oid = pg_catalog.to_regclass('pg_temp.import_rows')
                   AND c.relkind = 'r' AND c.relpersistence = 't' AND pg_catalog.pg_get_userbyid(c.relowner) = 'audit_owner');
END;
COMMENT ON FUNCTION audit.import_staging_ok() IS 'Whether this session''s pg_temp.import_rows is the staging table made by audit.import_begin.';

-- audit.import_begin makes this session's staging table unless it exists:
-- every column of an event, typed, plus the line of the input file each row
-- comes from. The importer fills it with COPY; audit_maintainer may INSERT
-- into it and do nothing else.
CREATE OR REPLACE FUNCTION audit.import_begin() RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF to_regclass('pg_temp.import_rows') IS NULL THEN
    CREATE TEMPORARY TABLE import_rows (
      line        bigint NOT NULL,
      id          uuid,
      org_id      uuid,
      occurred_at timestamptz,
      action      text,
      target_type text,
      target_id   text,
      actor_type  text,
      actor_id    uuid,
      actor_email text,
      ip          inet,
      user_agent  text,
      request_id  text,
      metadata    jsonb
    ) ON COMMIT DELETE ROWS;
    GRANT INSERT ON TABLE pg_temp.import_rows TO audit_maintainer;
  ELSIF NOT audit.import_staging_ok() THEN
    RAISE EXCEPTION 'audit.import_begin: pg_temp.import_rows exists and was not made by audit.import_begin'
      USING ERRCODE = 'AL020', HINT = 'Drop your own pg_temp.import_rows; the staging table is made for you.';
  END IF;
END
$$;
COMMENT ON FUNCTION audit.import_begin() IS
  'Bulk import: makes this session''s staging table pg_temp.import_rows (INSERT/COPY only) unless it exists. See docs/import.md.';

-- audit.import_checked is every staged row as it would be stored, with the
-- org's plan and retention floor, and the first rule it breaks (NULL: none).
-- Plain SQL, inlined into each statement of audit.import_batch, so each one
-- computes only the columns it uses. Its body names a temporary table that
-- exists only in an importing session, so it cannot be checked when created.
SET LOCAL check_function_bodies = off;
CREATE OR REPLACE FUNCTION audit.import_checked()
RETURNS TABLE (
  line bigint, id uuid, org_id uuid, occurred_at timestamptz, action text, target_type text, target_id text,
  actor_type text, actor_id uuid, actor_email text, ip inet, user_agent text, request_id text, metadata jsonb,
  plan text, retention interval, floor timestamptz, fault text[]
)
LANGUAGE sql
STABLE
AS $$
  SELECT r.line, r.id, r.org_id, r.occurred_at, r.action, coalesce(r.target_type, a.target_type), r.target_id,
         CASE WHEN r.actor_id IS NULL AND r.email IS NULL THEN 'system' ELSE 'user' END,
         r.actor_id, r.email, r.ip, left(nullif(r.user_agent, ''), 512), left(nullif(r.request_id, ''), 128),
         r.md, s.plan, s.retention, s.floor,
         coalesce(
           audit.event_fault(r.org_id, r.action, s.plan, a.required_keys, r.target_id, r.md,
                             audit.jsonb_bytes(r.md), r.md ->> 'via_pat', r.actor_email),
           CASE
             WHEN r.occurred_at IS NULL THEN
               ARRAY['AL007', 'occurred_at is required', 'Every imported event says when it happened.']
             WHEN r.occurred_at > now() THEN
               ARRAY['AL021', format('occurred_at %s is in the future', r.occurred_at), 'Only past events can be imported.']
             WHEN r.target_type IS DISTINCT FROM a.target_type AND r.target_type IS NOT NULL THEN
               ARRAY['AL022', format('target_type "%s" is not the target type of action %s (%s)', left(r.target_type, 100), r.action, a.target_type),
                     'Leave target_type empty to take it from audit.actions.']
             WHEN r.actor_type IS NOT NULL
                  AND r.actor_type IS DISTINCT FROM CASE WHEN r.actor_id IS NULL AND r.email IS NULL THEN 'system' ELSE 'user' END THEN
               ARRAY['AL023', format('actor_type "%s" does not match the actor', left(r.actor_type, 100)),
                     'An event with an actor id or email is a user''s; without, the system''s. Leave actor_type empty to derive it.']
             WHEN d.first_line IS NOT NULL AND d.first_line <> r.line THEN
               ARRAY['AL024', format('the same event (id, org_id, occurred_at) as line %s (a row without an id takes one from its values)', d.first_line),
                     'Each event is imported once. Give distinct ids to rows without one that are alike in every value.']
           END)
  FROM (
    SELECT i.*, coalesce(i.metadata, '{}'::jsonb) AS md,
           coalesce(i.actor_email, (SELECT u.email FROM cloud.users u WHERE u.id = i.actor_id)) AS email
    FROM pg_temp.import_rows i
  ) r
  LEFT JOIN audit.actions a ON a.action = r.action
  LEFT JOIN (
    SELECT o.org_id, x.plan, x.retention, x.floor
    FROM (SELECT DISTINCT i.org_id FROM pg_temp.import_rows i) o
    CROSS JOIN LATERAL audit.org_scope(o.org_id) x
  ) s ON s.org_id = r.org_id
  LEFT JOIN (
    SELECT i.org_id, i.occurred_at, i.id, min(i.line) AS first_line
    FROM pg_temp.import_rows i
    GROUP BY i.org_id, i.occurred_at, i.id
    HAVING count(*) > 1
  ) d ON d.org_id = r.org_id AND d.occurred_at = r.occurred_at AND d.id = r.id
$$;
SET LOCAL check_function_bodies = on;
COMMENT ON FUNCTION audit.import_checked() IS
  'Bulk import: the staged rows as they would be stored, with their org''s plan and retention floor and the first rule each breaks.';

{{- /* Whether the checked row c is stored already, in any tier table. */ -}}
{{- define "import_stored" }}(
{{- range $i, $tier := $.tiers }}
        {{ if $i }}OR {{ end }}EXISTS (SELECT FROM audit.events_{{ $tier }} e WHERE e.org_id = c.org_id AND e.occurred_at = c.occurred_at AND e.id = c.id)
{{- end }})
{{- end }}

{{- /* The INSERT of the checked rows into each tier table, by the org's
   plan; careful, leaving out the rows stored already. */ -}}
{{- define "import_insert" }}
{{- range $tier := $.tiers }}
    INSERT INTO audit.events_{{ $tier }} (id, org_id, occurred_at, action, target_type, target_id, actor_type,
                                          actor_id, actor_email, ip, user_agent, request_id, metadata)
    SELECT c.id, c.org_id, c.occurred_at, c.action, c.target_type, c.target_id, c.actor_type,
           c.actor_id, c.actor_email, c.ip, c.user_agent, c.request_id, c.metadata
    FROM audit.import_checked() c
    WHERE c.plan = '{{ $tier }}' AND c.occurred_at >= c.floor{{ if $.careful }} AND NOT {{ template "import_stored" $ }}
    ON CONFLICT DO NOTHING{{ end }};
{{- end }}
{{- end }}

-- audit.org_has_events says whether an org has an event in a tier table
-- between two instants. A function of its own, for audit.import_batch: its
-- statements are planned again for every batch (emptying the staging table
-- invalidates their plans), and a lookup in a tier table written there
-- would plan every leaf of it each time, where a function's plans last the
-- session.
CREATE OR REPLACE FUNCTION audit.org_has_events(tier text, org_id uuid, first_at timestamptz, last_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
  CASE tier
{{- range $tier := $.tiers }}
    WHEN '{{ $tier }}' THEN
      RETURN EXISTS (SELECT FROM audit.events_{{ $tier }} e
                     WHERE e.org_id = org_has_events.org_id AND e.occurred_at BETWEEN first_at AND last_at);
{{- end }}
  END CASE;
END
$$;
COMMENT ON FUNCTION audit.org_has_events(text, uuid, timestamptz, timestamptz) IS
  'Whether an org has an event in a tier table (free, team or enterprise) between two instants, inclusive.';

-- audit.import_batch loads the rows this transaction staged, all or nothing,
-- and empties the staging table. It returns the rows it did not load: every
-- invalid row (then nothing is loaded), or else the rows skipped because
-- their org's plan no longer retains them (expired) or because they are
-- already stored, in any tier table (duplicate), which makes an interrupted
-- import safe to run again. Rows without an id are given the one their
-- values make first, and leaves missing for the rows are made before they
-- are loaded.
CREATE OR REPLACE FUNCTION audit.import_batch()
RETURNS TABLE (line bigint, outcome text, code text, reason text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- A batch is bounded and the staging table never analysed: compiling the
-- checks to machine code (half a second) would cost more than running them.
SET jit = off
AS $$
DECLARE
  v_invalid   bigint;
  v_elsewhere boolean;
BEGIN
  IF NOT audit.import_staging_ok() THEN
    RAISE EXCEPTION 'audit.import_batch: no staging table in this session'
      USING ERRCODE = 'AL020', HINT = 'Call audit.import_begin() and COPY the rows into pg_temp.import_rows first.';
  END IF;

  -- A row without an id takes the one its values make, so that running the
  -- import again finds it stored; before the checks, so that two rows alike
  -- in every value are refused as the same event given twice.
  UPDATE pg_temp.import_rows i
     SET id = audit.event_content_id(i.org_id, i.occurred_at, i.action, i.target_id, i.actor_id, i.actor_email,
                                     i.ip, i.user_agent, i.request_id, i.metadata)
   WHERE i.id IS NULL;

  RETURN QUERY
    SELECT c.line, 'invalid'::text, c.fault[1], c.fault[2]
    FROM audit.import_checked() c
    WHERE c.fault IS NOT NULL
    ORDER BY c.line;
  GET DIAGNOSTICS v_invalid = ROW_COUNT;
  IF v_invalid > 0 THEN
    TRUNCATE pg_temp.import_rows;
    RETURN;
  END IF;

  PERFORM audit.make_leaf(l.plan, l.day)
  FROM (SELECT DISTINCT c.plan, (c.occurred_at AT TIME ZONE 'UTC')::date AS day
        FROM audit.import_checked() c
        WHERE c.occurred_at >= c.floor) l;

  RETURN QUERY
    SELECT c.line, 'expired'::text, NULL::text,
           format('occurred_at %s is older than the %s plan retains (%s): nothing before %s is kept',
                  c.occurred_at, c.plan, c.retention, c.floor)
    FROM audit.import_checked() c
    WHERE c.occurred_at < c.floor
    ORDER BY c.line;

  -- An event may be stored in another tier table than its org's plan's:
  -- after a plan change until the retention worker has moved the org's
  -- events, or by a write that came late. Whether any org of the batch has
  -- events in another tier, within the batch's span of time, is one lookup
  -- per org and tier; only then is each row looked for in every tier.
  SELECT EXISTS (
    SELECT FROM (SELECT i.org_id, min(i.occurred_at) AS first_at, max(i.occurred_at) AS last_at
                 FROM pg_temp.import_rows i
                 GROUP BY i.org_id) b
    JOIN cloud.orgs o ON o.id = b.org_id
    JOIN audit.tiers t ON t.tier <> o.plan
    WHERE audit.org_has_events(t.tier, b.org_id, b.first_at, b.last_at)
  ) INTO v_elsewhere;

  -- The common case: none of the rows is stored yet, and plain INSERTs load
  -- them. An import run again after a failure finds some stored in their
  -- tier: then the block is undone, and the batch loaded the careful way.
  IF NOT v_elsewhere THEN
    BEGIN
{{- template "import_insert" dict "careful" false "tiers" $.tiers }}
      TRUNCATE pg_temp.import_rows;
      RETURN;
    EXCEPTION WHEN unique_violation THEN
      NULL;
    END;
  END IF;

  -- The careful way: the rows stored already, in any tier, are reported and
  -- left out.
  RETURN QUERY
    SELECT c.line, 'duplicate'::text, NULL::text, 'an event with this id, org_id and occurred_at is already stored'::text
    FROM audit.import_checked() c
    WHERE c.occurred_at >= c.floor AND {{ template "import_stored" $ }}
    ORDER BY c.line;
{{- template "import_insert" dict "careful" true "tiers" $.tiers }}
  TRUNCATE pg_temp.import_rows;
END
$$;
COMMENT ON FUNCTION audit.import_batch() IS
  'Bulk import: checks every row staged by this transaction as audit.log_event would and loads them all, or none if any is invalid; returns the rows not loaded and why. See docs/import.md.';
