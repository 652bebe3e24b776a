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

-- audit.log_event validates and records one event in the caller's
-- transaction and returns its id. It is kept lean because it runs inside
-- every mutating transaction of the control plane: two primary-key lookups,
-- static SQL only, and a catalog lookup for the day's leaf, which it makes
-- if the retention worker has not.
CREATE OR REPLACE FUNCTION audit.log_event(
  org_id      uuid,
  action      text,
  target_id   text  DEFAULT NULL,
  metadata    jsonb DEFAULT NULL,
  actor_id    uuid  DEFAULT NULL,
  actor_email text  DEFAULT NULL,
  via_pat     text  DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_plan        text;
  v_target_type text;
  v_required    text[];
  v_metadata    jsonb := coalesce(log_event.metadata, '{}');
  v_actor_id    uuid;
  v_actor_email text;
  v_via_pat     text;
  v_at          timestamptz := clock_timestamp();
  v_id          uuid := gen_random_uuid();
BEGIN
  IF log_event.org_id IS NULL OR log_event.action IS NULL THEN
    RAISE EXCEPTION 'audit.log_event: % is required', CASE WHEN log_event.org_id IS NULL THEN 'org_id' ELSE 'action' END
      USING ERRCODE = 'AL007';
  END IF;

  SELECT o.plan INTO v_plan FROM cloud.orgs o WHERE o.id = log_event.org_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit.log_event: unknown org %', log_event.org_id
      USING ERRCODE = 'AL001', HINT = 'org_id must be the id of a row of cloud.orgs.';
  END IF;

  SELECT a.target_type, a.required_keys INTO v_target_type, v_required
  FROM audit.actions a WHERE a.action = log_event.action;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit.log_event: unknown action "%"', left(log_event.action, 100)
      USING ERRCODE = 'AL002', HINT = 'The actions are listed in audit.actions.';
  END IF;

  IF jsonb_typeof(v_metadata) <> 'object' THEN
    RAISE EXCEPTION 'audit.log_event: metadata must be a JSON object, not %', jsonb_typeof(v_metadata)
      USING ERRCODE = 'AL003';
  END IF;
  IF NOT v_metadata ?& v_required THEN
    RAISE EXCEPTION 'audit.log_event: action % requires metadata keys %; missing: %', log_event.action,
      array_to_string(v_required, ', '),
      (SELECT string_agg(k, ', ') FROM unnest(v_required) k WHERE NOT v_metadata ? k)
      USING ERRCODE = 'AL004';
  END IF;

  -- The actor: from the arguments if any is given, else from the context.
  IF log_event.actor_id IS NOT NULL OR log_event.actor_email IS NOT NULL OR log_event.via_pat IS NOT NULL THEN
    v_actor_id    := log_event.actor_id;
    v_actor_email := log_event.actor_email;
    v_via_pat     := log_event.via_pat;
  ELSE
    v_actor_id    := nullif(current_setting('audit.actor_id', true), '')::uuid;
    v_actor_email := nullif(current_setting('audit.actor_email', true), '');
    v_via_pat     := nullif(current_setting('audit.via_pat', true), '');
  END IF;
  IF v_actor_id IS NOT NULL AND v_actor_email IS NULL THEN
    SELECT u.email INTO v_actor_email FROM cloud.users u WHERE u.id = v_actor_id;
  END IF;
  IF v_actor_email IS NOT NULL AND (length(v_actor_email) > 254 OR v_actor_email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$') THEN
    RAISE EXCEPTION 'audit.log_event: malformed actor email "%"', left(v_actor_email, 254)
      USING ERRCODE = 'AL006', HINT = 'An email is name@domain.tld, at most 254 characters.';
  END IF;
  IF v_via_pat IS NOT NULL THEN
    IF length(v_via_pat) > 100 THEN
      RAISE EXCEPTION 'audit.log_event: via_pat is % characters; the limit is 100', length(v_via_pat) USING ERRCODE = 'AL005';
    END IF;
    v_metadata := v_metadata || jsonb_build_object('via_pat', v_via_pat);
  END IF;
  IF length(log_event.target_id) > 256 THEN
    RAISE EXCEPTION 'audit.log_event: target_id is % characters; the limit is 256', length(log_event.target_id) USING ERRCODE = 'AL005';
  END IF;
  IF pg_column_size(v_metadata) > 16384 THEN
    RAISE EXCEPTION 'audit.log_event: metadata is % bytes; the limit is 16384', pg_column_size(v_metadata) USING ERRCODE = 'AL005';
  END IF;

  IF to_regclass('audit.' || audit.leaf_name(v_plan, v_at)) IS NULL THEN
    PERFORM audit.make_leaf(v_plan, (v_at AT TIME ZONE 'UTC')::date);
  END IF;

  -- Static SQL per tier: each INSERT keeps its cached plan.
  CASE v_plan
{{- range $tier := list "free" "team" "enterprise" }}
  WHEN '{{ $tier }}' THEN
    INSERT INTO audit.events_{{ $tier }} (id, org_id, occurred_at, action, target_type, target_id, actor_type,
                                   actor_id, actor_email, ip, user_agent, request_id, metadata)
    VALUES (v_id, log_event.org_id, v_at, log_event.action, v_target_type, log_event.target_id,
            CASE WHEN v_actor_id IS NULL AND v_actor_email IS NULL THEN 'system' ELSE 'user' END,
            v_actor_id, v_actor_email,
            nullif(current_setting('audit.ip', true), '')::inet,
            left(nullif(current_setting('audit.user_agent', true), ''), 512),
            left(nullif(current_setting('audit.request_id', true), ''), 128),
            v_metadata);
{{- end }}
  END CASE;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION audit.log_event(uuid, text, text, jsonb, uuid, text, text) IS
  'Records one audit event in the caller''s transaction and returns its id; raises (SQLSTATE class AL) on invalid input. See docs/recording.md.';
