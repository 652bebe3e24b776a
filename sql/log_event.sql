-- Recording: audit.set_context and audit.log_event, the contract for
-- application code (docs/recording.md). Errors carry SQLSTATEs of class AL:
--   AL001 unknown org            AL005 value too long
--   AL002 unknown action         AL006 malformed email
--   AL003 metadata not an object AL007 missing argument
--   AL004 required key missing   AL008 unknown tier
-- and the caller's transaction fails with them: no action without its event.

-- audit.set_context records who is acting, for the rest of the transaction,
-- and marks the transaction (audit.context), so that audit.log_event reads
-- the settings only where it was called. The values are checked by
-- audit.log_event, which cannot trust them: the settings can also be set
-- directly. (A function SET clause would undo the
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
         set_config('audit.request_id', coalesce(request_id, ''), true),
         set_config('audit.context', 'set', true);
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
-- of the control plane, so its common path is built for what PostgreSQL sets
-- up again in every transaction (docs/benchmarks.md): every function call in
-- an expression (an ACL check and an fmgr lookup each) and every PL/pgSQL
-- expression. It is two statements with cached plans, one SELECT that looks
-- up the org's plan and the catalog entry and decides the route, one static
-- INSERT per tier, and a few bare tests of arguments. The route is the
-- org's plan when every rule holds (checked by sufficient conditions with few
-- function calls) and the day's leaf exists; otherwise it is NULL and the
-- slow path works out which rule was broken (audit.event_fault, the rules it
-- shares with the bulk import) to say so, or makes the missing leaf, then
-- routes.
-- Events of one statement share its start time (statement_timestamp), so
-- the leaf checked is the leaf written.
-- The request's context comes from the arguments (actor_id, actor_email and
-- via_pat together; ip, user_agent and request_id each), else from
-- audit.set_context, read only when an argument is missing and the
-- transaction called it: a caller may give it all in one call, one round
-- trip.
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
  v_at          timestamptz;
  v_route       text;
  v_fault       text[];
  v_id          uuid;
BEGIN
  -- The context, if the transaction set one, fills in what the arguments
  -- leave out: the actor as a whole, the request's values each.
  IF log_event.actor_id IS NULL AND log_event.actor_email IS NULL AND log_event.via_pat IS NULL
     OR log_event.ip IS NULL OR log_event.user_agent IS NULL OR log_event.request_id IS NULL THEN
    IF current_setting('audit.context', true) = 'set' THEN
      IF log_event.actor_id IS NULL AND log_event.actor_email IS NULL AND log_event.via_pat IS NULL THEN
        log_event.actor_id := nullif(current_setting('audit.actor_id', true), '')::uuid;
        log_event.actor_email := nullif(current_setting('audit.actor_email', true), '');
        log_event.via_pat := nullif(current_setting('audit.via_pat', true), '');
      END IF;
      log_event.ip := coalesce(log_event.ip, nullif(current_setting('audit.ip', true), '')::inet);
      log_event.user_agent := coalesce(log_event.user_agent, nullif(current_setting('audit.user_agent', true), ''));
      log_event.request_id := coalesce(log_event.request_id, nullif(current_setting('audit.request_id', true), ''));
    END IF;
  END IF;
  IF log_event.via_pat IS NOT NULL THEN
    log_event.metadata := coalesce(log_event.metadata, '{}') || jsonb_build_object('via_pat', log_event.via_pat);
  END IF;

  -- The route: sufficient conditions for every rule (an object holding the
  -- required keys, no via_pat but the argument's, of at most 100 characters,
  -- target_id and email within their rules, metadata within 16 KiB
  -- uncompressed: || '{}' returns an object detoasted) and the day's leaf.
  SELECT o.plan, a.target_type, statement_timestamp(),
         CASE WHEN jsonb_typeof(coalesce(log_event.metadata, '{}')) = 'object'
                   AND coalesce(log_event.metadata, '{}') ?& a.required_keys
                   AND (NOT coalesce(log_event.metadata, '{}') ? 'via_pat' OR length(log_event.via_pat) <= 100)
                   AND (log_event.target_id IS NULL OR length(log_event.target_id) <= 256)
                   AND (log_event.actor_email IS NULL OR audit.valid_email(log_event.actor_email))
                   AND pg_column_size(coalesce(log_event.metadata, '{}') || '{}') <= 16384
                   AND to_regclass('audit.' || audit.leaf_name(o.plan, statement_timestamp())) IS NOT NULL
              THEN o.plan END
    INTO v_plan, v_target_type, v_at, v_route
  FROM cloud.orgs o, audit.actions a
  WHERE o.id = log_event.org_id AND a.action = log_event.action;

  LOOP
    -- An actor given by id alone is recorded with the user's email (checked
    -- only when given: cloud.users holds the emails people sign in with).
    IF v_route IS NOT NULL AND log_event.actor_email IS NULL AND log_event.actor_id IS NOT NULL THEN
      SELECT u.email INTO log_event.actor_email FROM cloud.users u WHERE u.id = log_event.actor_id;
    END IF;
    CASE
{{- range $tier := $.tiers }}
    WHEN v_route = '{{ $tier }}' THEN
      INSERT INTO audit.events_{{ $tier }} (id, org_id, occurred_at, action, target_type, target_id, actor_type,
                                     actor_id, actor_email, ip, user_agent, request_id, metadata)
      VALUES (gen_random_uuid(), log_event.org_id, v_at, log_event.action, v_target_type, log_event.target_id,
              CASE WHEN log_event.actor_id IS NULL AND log_event.actor_email IS NULL THEN 'system' ELSE 'user' END,
              log_event.actor_id, log_event.actor_email, log_event.ip,
              left(log_event.user_agent, 512), left(log_event.request_id, 128), coalesce(log_event.metadata, '{}'))
      RETURNING id INTO v_id;
      RETURN v_id;
{{- end }}
    ELSE
      -- Not routed: which rule is broken, if any? (The loop ends: the plan
      -- routed below is a tier, or audit.make_leaf refuses it, AL008.)
      log_event.metadata := coalesce(log_event.metadata, '{}');
      v_fault := audit.event_fault(log_event.org_id, log_event.action,
                                   (SELECT o.plan FROM cloud.orgs o WHERE o.id = log_event.org_id),
                                   (SELECT a.required_keys FROM audit.actions a WHERE a.action = log_event.action),
                                   log_event.target_id, log_event.metadata, audit.jsonb_bytes(log_event.metadata),
                                   log_event.metadata ->> 'via_pat', log_event.actor_email);
      IF v_fault IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = v_fault[1], MESSAGE = 'audit.log_event: ' || v_fault[2], HINT = v_fault[3];
      END IF;
      -- Every rule holds: only the day's leaf is missing (the retention
      -- worker has not made it), or the check was too strict (a via_pat
      -- the metadata brought itself). Make the leaf if need be, and route.
      PERFORM audit.make_leaf(v_plan, (v_at AT TIME ZONE 'UTC')::date);
      v_route := v_plan;
    END CASE;
  END LOOP;
END
$$;
COMMENT ON FUNCTION audit.log_event(uuid, text, text, jsonb, uuid, text, text, inet, text, text) IS
  'Records one audit event in the caller''s transaction and returns its id; raises (SQLSTATE class AL) on invalid input. See docs/recording.md.';
