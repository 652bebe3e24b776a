-- Recording: audit.set_context and audit.log_event, the contract for
-- application code (docs/recording.md). Errors carry SQLSTATEs of class AL:
--   AL001 unknown org            AL005 value too long
--   AL002 unknown action         AL006 malformed email
--   AL003 metadata not an object AL007 missing argument
--   AL004 required key missing   AL008 unknown tier
-- and the caller's transaction fails with them: no action without its event.

-- audit.set_context records who is acting, for the rest of the transaction.
-- The values are checked by audit.log_event, which cannot trust them: the
-- settings can also be set directly. (A function SET clause would undo the
-- settings at exit; the SQL-standard body is bound at creation, so it needs
-- no pinned search_path.)
CREATE OR REPLACE FUNCTION audit.set_context(
  actor_id    uuid DEFAULT NULL,
  actor_email text DEFAULT NULL,
  via_pat     text DEFAULT NULL,
  ip          inet DEFAULT NULL,
  user_agent  text DEFAULT NULL,
  request_id  text DEFAULT NULL
) RETURNS void
LANGUAGE sql
BEGIN ATOMIC
  SELECT set_config('audit.actor_id', coalesce(actor_id::text, ''), true),
         set_config('audit.actor_email', coalesce(actor_email, ''), true),
         set_config('audit.via_pat', coalesce(via_pat, ''), true),
         set_config('audit.ip', coalesce(host(ip), ''), true),
         set_config('audit.user_agent', coalesce(user_agent, ''), true),
         set_config('audit.request_id', coalesce(request_id, ''), true);
END;
COMMENT ON FUNCTION audit.set_context(uuid, text, text, inet, text, text) IS
  'Sets who is acting (actor, PAT, client IP, user agent, request id) for the audit events of the rest of the transaction.';

-- audit.valid_email is the rule for actor emails: name@domain.tld, at most
-- 254 characters. Inlined where it is used.
CREATE OR REPLACE FUNCTION audit.valid_email(email text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$';
COMMENT ON FUNCTION audit.valid_email(text) IS 'Whether an actor email is acceptable: name@domain.tld, at most 254 characters.';

-- audit.missing_keys lists the keys of `required` that `metadata` lacks, for
-- error messages.
CREATE OR REPLACE FUNCTION audit.missing_keys(metadata jsonb, required text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT string_agg(k, ', ') FROM unnest(required) k WHERE NOT metadata ? k);
COMMENT ON FUNCTION audit.missing_keys(jsonb, text[]) IS 'The required keys a metadata object lacks, comma-separated (for error messages).';

-- audit.via_pat_ok: metadata's via_pat, which the Activity page shows as the
-- token acted with, is absent or a string of at most 100 characters. The rule
-- of audit.log_event (whether via_pat came from the context, an argument or
-- the metadata itself) and of the import.
CREATE OR REPLACE FUNCTION audit.via_pat_ok(metadata jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(jsonb_typeof(metadata -> 'via_pat') = 'string' AND length(metadata ->> 'via_pat') <= 100,
                metadata -> 'via_pat' IS NULL);
COMMENT ON FUNCTION audit.via_pat_ok(jsonb) IS 'Whether metadata''s via_pat is absent or a string of at most 100 characters.';

-- audit.event_fault is the one statement of the rules an event must satisfy,
-- shared by audit.log_event (when its combined check fails, to say why) and
-- by the bulk import (sql/import.sql, for every row). It takes what the
-- caller has already looked up: the org's plan (NULL: no such org), the
-- action's required keys (NULL: no such action) and the metadata's size as
-- stored in memory. It returns NULL when every rule holds, else
-- {SQLSTATE, message, hint} of the first rule broken. Plain SQL without
-- subqueries, so the planner inlines it into the import's set-based query.
CREATE OR REPLACE FUNCTION audit.event_fault(
  org_id         uuid,
  action         text,
  plan           text,
  required_keys  text[],
  target_id      text,
  metadata       jsonb,
  metadata_bytes integer,
  via_pat        text,
  actor_email    text
) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
  WHEN org_id IS NULL OR action IS NULL THEN
    ARRAY['AL007', format('%s is required', CASE WHEN org_id IS NULL THEN 'org_id' ELSE 'action' END),
          'Every event names its org (org_id) and its action.']
  WHEN plan IS NULL THEN
    ARRAY['AL001', format('unknown org %s', org_id), 'org_id must be the id of a row of cloud.orgs.']
  WHEN required_keys IS NULL THEN
    ARRAY['AL002', format('unknown action "%s"', left(action, 100)), 'The actions are listed in audit.actions.']
  WHEN jsonb_typeof(metadata) <> 'object' THEN
    ARRAY['AL003', format('metadata must be a JSON object, not %s', jsonb_typeof(metadata)),
          'metadata is a JSON object such as {"name": "prod"}.']
  WHEN NOT metadata ?& required_keys THEN
    ARRAY['AL004', format('action %s requires metadata keys %s; missing: %s', action,
                          array_to_string(required_keys, ', '), audit.missing_keys(metadata, required_keys)),
          'audit.actions lists the metadata keys each action requires.']
  WHEN length(target_id) > 256 THEN
    ARRAY['AL005', format('target_id is %s characters; the limit is 256', length(target_id)), 'Limits: target_id 256 characters, via_pat 100, metadata 16384 bytes.']
  WHEN NOT audit.via_pat_ok(metadata) THEN
    ARRAY['AL005', format('via_pat must be a string of at most 100 characters, not %s',
                          CASE jsonb_typeof(metadata -> 'via_pat') WHEN 'string' THEN length(via_pat) || ' characters'
                                                                    ELSE 'a JSON ' || jsonb_typeof(metadata -> 'via_pat') END),
          'Limits: target_id 256 characters, via_pat 100, metadata 16384 bytes.']
  WHEN NOT coalesce(audit.valid_email(actor_email), true) THEN
    ARRAY['AL006', format('malformed actor email "%s"', left(actor_email, 254)), 'An email is name@domain.tld, at most 254 characters.']
  WHEN metadata_bytes > 16384 THEN
    ARRAY['AL005', format('metadata is %s bytes; the limit is 16384', metadata_bytes), 'Limits: target_id 256 characters, via_pat 100, metadata 16384 bytes.']
END;
COMMENT ON FUNCTION audit.event_fault(uuid, text, text, text[], text, jsonb, integer, text, text) IS
  'The first rule an event breaks, as {SQLSTATE, message, hint}, or NULL: the rules of audit.log_event and of the bulk import.';

-- audit.log_event validates and records one event in the caller's
-- transaction and returns its id. It runs inside every mutating transaction
-- of the control plane, so its common path is two statements with cached
-- plans and few PL/pgSQL expressions (each costs a planning step per
-- transaction): one SELECT that gathers the org's plan, the catalog entry and
-- the actor, one expression that checks every rule and that the day's leaf
-- exists, and one static INSERT per tier. Events of one statement share its
-- start time (statement_timestamp), so the leaf checked is the leaf written. Only when the check
-- fails does it work out which rule was broken (audit.event_fault, the rules
-- it shares with the bulk import), to say so, or make the missing leaf.
-- The request's context comes from the arguments (actor_id, actor_email and
-- via_pat together; ip, user_agent and request_id each), else from
-- audit.set_context: a caller may give it all in one call, one round trip.
-- The signature grew ip, user_agent and request_id: the old one goes, or a
-- call naming only the first arguments would match both.
DROP FUNCTION IF EXISTS audit.log_event(uuid, text, text, jsonb, uuid, text, text);
CREATE OR REPLACE FUNCTION audit.log_event(
  org_id      uuid,
  action      text,
  target_id   text  DEFAULT NULL,
  metadata    jsonb DEFAULT NULL,
  actor_id    uuid  DEFAULT NULL,
  actor_email text  DEFAULT NULL,
  via_pat     text  DEFAULT NULL,
  ip          inet  DEFAULT NULL,
  user_agent  text  DEFAULT NULL,
  request_id  text  DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_plan        text;
  v_target_type text;
  v_required    text[];
  v_metadata    jsonb;
  v_actor_id    uuid;
  v_actor_email text;
  v_via_pat     text;
  v_at          timestamptz;
  v_email_ok    boolean;
  v_leaf_exists boolean;
  v_fault       text[];
  v_id          uuid;
BEGIN
  SELECT o.plan, a.target_type, a.required_keys, statement_timestamp(), c.actor_id, c.actor_email, c.via_pat,
         coalesce(audit.valid_email(c.actor_email), true),
         to_regclass('audit.' || audit.leaf_name(o.plan, statement_timestamp())) IS NOT NULL
    INTO v_plan, v_target_type, v_required, v_at, v_actor_id, v_actor_email, v_via_pat, v_email_ok, v_leaf_exists
  FROM cloud.orgs o, audit.actions a, (
    -- The actor: from the arguments if any is given, else from the context.
    SELECT CASE WHEN x.override THEN log_event.actor_id
                ELSE nullif(current_setting('audit.actor_id', true), '')::uuid END AS actor_id,
           CASE WHEN x.override THEN log_event.actor_email
                ELSE nullif(current_setting('audit.actor_email', true), '') END AS actor_email,
           CASE WHEN x.override THEN log_event.via_pat
                ELSE nullif(current_setting('audit.via_pat', true), '') END AS via_pat
    FROM (SELECT log_event.actor_id IS NOT NULL OR log_event.actor_email IS NOT NULL
                 OR log_event.via_pat IS NOT NULL AS override) x
  ) c
  WHERE o.id = log_event.org_id AND a.action = log_event.action;

  v_metadata := CASE WHEN v_via_pat IS NULL THEN coalesce(log_event.metadata, '{}')
                     ELSE coalesce(log_event.metadata, '{}') || jsonb_build_object('via_pat', v_via_pat) END;

  -- Every rule at once, and the day's leaf; false or NULL sends us to the
  -- diagnosis.
  IF NOT coalesce(v_email_ok AND v_leaf_exists
                  AND jsonb_typeof(v_metadata) = 'object' AND v_metadata ?& v_required
                  AND coalesce(length(log_event.target_id) <= 256, true)
                  AND audit.via_pat_ok(v_metadata)
                  AND audit.jsonb_bytes(v_metadata) <= 16384, false) THEN
    v_fault := audit.event_fault(log_event.org_id, log_event.action,
                                 (SELECT o.plan FROM cloud.orgs o WHERE o.id = log_event.org_id),
                                 (SELECT a.required_keys FROM audit.actions a WHERE a.action = log_event.action),
                                 log_event.target_id, v_metadata, audit.jsonb_bytes(v_metadata), v_metadata ->> 'via_pat', v_actor_email);
    IF v_fault IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = v_fault[1], MESSAGE = 'audit.log_event: ' || v_fault[2], HINT = v_fault[3];
    END IF;
    -- Every rule holds: only the day's leaf is missing (the retention worker
    -- has not made it), so make it.
    PERFORM audit.make_leaf(v_plan, (v_at AT TIME ZONE 'UTC')::date);
  END IF;

  -- An actor given by id alone is recorded with the user's email (checked
  -- above only when given: cloud.users holds the emails people sign in with).
  IF v_actor_email IS NULL AND v_actor_id IS NOT NULL THEN
    SELECT u.email INTO v_actor_email FROM cloud.users u WHERE u.id = v_actor_id;
  END IF;

  -- Static SQL per tier: each INSERT keeps its cached plan.
  CASE v_plan
{{- range $tier := $.tiers }}
  WHEN '{{ $tier }}' THEN
    INSERT INTO audit.events_{{ $tier }} (id, org_id, occurred_at, action, target_type, target_id, actor_type,
                                   actor_id, actor_email, ip, user_agent, request_id, metadata)
    VALUES (gen_random_uuid(), log_event.org_id, v_at, log_event.action, v_target_type, log_event.target_id,
            CASE WHEN v_actor_id IS NULL AND v_actor_email IS NULL THEN 'system' ELSE 'user' END,
            v_actor_id, v_actor_email,
            coalesce(log_event.ip, nullif(current_setting('audit.ip', true), '')::inet),
            left(coalesce(log_event.user_agent, nullif(current_setting('audit.user_agent', true), '')), 512),
            left(coalesce(log_event.request_id, nullif(current_setting('audit.request_id', true), '')), 128),
            v_metadata)
    RETURNING id INTO v_id;
{{- end }}
  END CASE;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION audit.log_event(uuid, text, text, jsonb, uuid, text, text, inet, text, text) IS
  'Records one audit event in the caller''s transaction and returns its id; raises (SQLSTATE class AL) on invalid input. See docs/recording.md.';
