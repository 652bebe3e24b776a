-- Delivery (docs/delivery.md): the control plane manages an org's
-- subscriptions through audit.subscribe, audit.pause_subscription,
-- audit.resume_subscription and audit.unsubscribe, each recording an
-- audit_stream.* event in its transaction; the delivery worker registers its
-- key and records attempts and positions through the other functions. Errors:
--   AL040 unknown subscription   AL042 a position that moved meanwhile
--   AL041 invalid subscription, rule or key

-- audit.delivery_key: the key destinations are sealed to, the worker's
-- newest.
CREATE OR REPLACE FUNCTION audit.delivery_key(OUT key_id text, OUT public_key bytea)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT k.key_id, k.public_key FROM audit.delivery_keys k ORDER BY k.created_at DESC, k.key_id LIMIT 1;
END;
COMMENT ON FUNCTION audit.delivery_key() IS 'The delivery worker''s public key (X25519) that new destinations are sealed to.';

-- audit.register_delivery_key makes the worker's key the one new
-- destinations are sealed to; older keys stay for the destinations sealed
-- to them.
CREATE OR REPLACE FUNCTION audit.register_delivery_key(p_key_id text, p_public_key bytea) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_key_id IS DISTINCT FROM left(encode(sha256(p_public_key), 'hex'), 16) THEN
    RAISE EXCEPTION 'key id % does not match the public key', p_key_id USING ERRCODE = 'AL041';
  END IF;
  INSERT INTO audit.delivery_keys (key_id, public_key) VALUES (p_key_id, p_public_key)
  ON CONFLICT (key_id) DO UPDATE SET created_at = now()
    WHERE delivery_keys.created_at < (SELECT max(created_at) FROM audit.delivery_keys);
END
$$;
COMMENT ON FUNCTION audit.register_delivery_key(text, bytea) IS 'For the delivery worker: its public key, which new destinations are sealed to.';

-- audit.subscription_rule_fault says what is wrong with a rule, or NULL.
CREATE OR REPLACE FUNCTION audit.subscription_rule_fault(p_actions text[], p_target_types text[], p_actor_emails text[])
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT coalesce(
    (SELECT format('unknown action "%s" (an action of the catalog, or a prefix such as cluster.*)', left(a, 100))
     FROM unnest(p_actions) a
     WHERE NOT EXISTS (SELECT FROM audit.actions c
                       WHERE c.action = a OR (a ~ '^[a-z_]+(\.[a-z_]+)*\.\*$' AND starts_with(c.action, left(a, -1))))
     LIMIT 1),
    (SELECT format('unknown target type "%s"', left(tt, 100))
     FROM unnest(p_target_types) tt
     WHERE NOT EXISTS (SELECT FROM audit.actions c WHERE c.target_type = tt)
     LIMIT 1),
    (SELECT format('malformed actor email "%s"', left(e, 254))
     FROM unnest(p_actor_emails) e
     WHERE NOT coalesce(audit.valid_email(e), false)
     LIMIT 1),
    CASE WHEN greatest(cardinality(p_actions), cardinality(p_target_types), cardinality(p_actor_emails)) > 100
         THEN 'a rule lists at most 100 actions, target types and actor emails' END);
END;
COMMENT ON FUNCTION audit.subscription_rule_fault(text[], text[], text[]) IS 'What is wrong with a subscription''s rule, or NULL.';

-- audit.subscribe makes a subscription of org p_org, starting after the
-- org's newest sealed event, and records audit_stream.created. p_sealed is
-- the destination sealed to key p_key_id (docs/delivery.md); p_host its
-- host, shown.
CREATE OR REPLACE FUNCTION audit.subscribe(
  p_org uuid, p_name text, p_kind text, p_host text, p_key_id text, p_sealed bytea,
  p_actions text[] DEFAULT '{}', p_target_types text[] DEFAULT '{}', p_actor_emails text[] DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fault text;
  v_id    uuid;
BEGIN
  v_fault := CASE
    WHEN NOT EXISTS (SELECT FROM cloud.orgs o WHERE o.id = p_org) THEN format('unknown org %s', p_org)
    WHEN p_name IS NULL OR length(p_name) NOT BETWEEN 1 AND 100 OR p_name ~ '[[:cntrl:]]'
      THEN 'a name is 1 to 100 characters, none a control character (it is printed to terminals)'
    WHEN p_kind IS NULL OR p_kind NOT IN ('webhook', 'slack', 'splunk_hec') THEN format('unknown kind "%s" (webhook, slack or splunk_hec)', left(p_kind, 100))
    WHEN p_host IS NULL OR p_host !~ '^[A-Za-z0-9.:\[\]-]{1,255}$' THEN 'a host is a DNS name or an IP address'
    WHEN NOT EXISTS (SELECT FROM audit.delivery_keys k WHERE k.key_id = p_key_id) THEN format('unknown delivery key "%s"', left(p_key_id, 100))
    WHEN p_sealed IS NULL OR length(p_sealed) > 8192 THEN 'a sealed destination is at most 8192 bytes'
    ELSE audit.subscription_rule_fault(coalesce(p_actions, '{}'), coalesce(p_target_types, '{}'), coalesce(p_actor_emails, '{}'))
  END;
  IF v_fault IS NOT NULL THEN
    RAISE EXCEPTION 'audit.subscribe: %', v_fault USING ERRCODE = 'AL041';
  END IF;
  INSERT INTO audit.subscriptions (org_id, name, kind, host, actions, target_types, actor_emails, key_id, sealed, position)
  VALUES (p_org, p_name, p_kind, lower(p_host), coalesce(p_actions, '{}'), coalesce(p_target_types, '{}'),
          coalesce(p_actor_emails, '{}'), p_key_id, p_sealed,
          coalesce((SELECT h.seq FROM audit.seal_heads h WHERE h.org_id = p_org), 0))
  RETURNING id INTO v_id;
  PERFORM audit.log_event(p_org, 'audit_stream.created', v_id::text,
                          jsonb_build_object('name', p_name, 'kind', p_kind, 'host', lower(p_host)));
  RETURN v_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'audit.subscribe: org % already has a subscription named "%"', p_org, p_name USING ERRCODE = 'AL041';
END
$$;
COMMENT ON FUNCTION audit.subscribe(uuid, text, text, text, text, bytea, text[], text[], text[]) IS
  'For the control plane: a new subscription of an org (delivering from its next sealed event on); records audit_stream.created.';

-- audit.set_subscription_state pauses or resumes a subscription, recording
-- audit_stream.updated; resuming also clears a failing state. Asking for
-- the state it is in changes and records nothing.
CREATE OR REPLACE FUNCTION audit.set_subscription_state(p_org uuid, p_id uuid, p_state text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_name text;
  v_old  text;
BEGIN
  SELECT s.name, s.state INTO v_name, v_old FROM audit.subscriptions s WHERE s.org_id = p_org AND s.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no subscription % in org %', p_id, p_org USING ERRCODE = 'AL040';
  END IF;
  IF v_old = p_state THEN
    RETURN; -- nothing changes, so nothing to record
  END IF;
  UPDATE audit.subscriptions SET state = p_state, failing_since = NULL, updated_at = now() WHERE id = p_id;
  PERFORM audit.log_event(p_org, 'audit_stream.updated', p_id::text,
                          jsonb_build_object('name', v_name, 'changes', 'state', 'previous_state', v_old, 'new_state', p_state));
END
$$;
COMMENT ON FUNCTION audit.set_subscription_state(uuid, uuid, text) IS 'Pauses or resumes a subscription; records audit_stream.updated.';

CREATE OR REPLACE FUNCTION audit.pause_subscription(p_org uuid, p_id uuid) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT audit.set_subscription_state(p_org, p_id, 'paused');
END;
COMMENT ON FUNCTION audit.pause_subscription(uuid, uuid) IS 'For the control plane: stops delivering to a subscription, keeping its position; records audit_stream.updated.';

CREATE OR REPLACE FUNCTION audit.resume_subscription(p_org uuid, p_id uuid) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT audit.set_subscription_state(p_org, p_id, 'active');
END;
COMMENT ON FUNCTION audit.resume_subscription(uuid, uuid) IS 'For the control plane: delivers again (paused or failing) from the position; records audit_stream.updated.';

-- audit.unsubscribe removes a subscription and its attempts, recording
-- audit_stream.deleted.
CREATE OR REPLACE FUNCTION audit.unsubscribe(p_org uuid, p_id uuid) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_name text;
BEGIN
  DELETE FROM audit.subscriptions s WHERE s.org_id = p_org AND s.id = p_id RETURNING s.name INTO v_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no subscription % in org %', p_id, p_org USING ERRCODE = 'AL040';
  END IF;
  PERFORM audit.log_event(p_org, 'audit_stream.deleted', p_id::text, jsonb_build_object('name', v_name));
END
$$;
COMMENT ON FUNCTION audit.unsubscribe(uuid, uuid) IS 'For the control plane: removes a subscription and its attempts; records audit_stream.deleted.';

-- audit.record_delivery records the worker's step for a subscription: an
-- attempt (p_events > 0 or a failure) and, when it succeeded, the position
-- moving from p_from to p_to. The move is compare-and-set: two workers can
-- never both move one position. Returns failing_since (NULL after a
-- success).
CREATE OR REPLACE FUNCTION audit.record_delivery(
  p_id uuid, p_from bigint, p_to bigint, p_ok boolean,
  p_attempted_at timestamptz, p_status integer, p_latency_ms integer,
  p_first_seq bigint, p_last_seq bigint, p_events integer, p_error text)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_org   uuid;
  v_since timestamptz;
BEGIN
  IF p_ok THEN
    UPDATE audit.subscriptions s SET position = p_to, failing_since = NULL
    WHERE s.id = p_id AND s.position = p_from AND p_to >= p_from
    RETURNING s.org_id, s.failing_since INTO v_org, v_since;
  ELSE
    UPDATE audit.subscriptions s SET failing_since = coalesce(s.failing_since, p_attempted_at)
    WHERE s.id = p_id AND s.position = p_from
    RETURNING s.org_id, s.failing_since INTO v_org, v_since;
  END IF;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subscription % is gone or no longer at position %', p_id, p_from USING ERRCODE = 'AL042';
  END IF;
  IF p_events > 0 OR NOT p_ok THEN
    INSERT INTO audit.delivery_attempts (subscription_id, org_id, attempted_at, status, latency_ms, first_seq, last_seq, events, error)
    VALUES (p_id, v_org, p_attempted_at, p_status, greatest(p_latency_ms, 0), p_first_seq, p_last_seq, p_events, left(p_error, 1000));
  END IF;
  RETURN v_since;
END
$$;
COMMENT ON FUNCTION audit.record_delivery(uuid, bigint, bigint, boolean, timestamptz, integer, integer, bigint, bigint, integer, text) IS
  'For the delivery worker: logs an attempt and, on success, moves the subscription''s position (compare-and-set).';

-- audit.mark_subscription_failing pauses a subscription that has failed
-- since p_since, recording audit_stream.failing; nothing if it is no longer
-- failing so.
CREATE OR REPLACE FUNCTION audit.mark_subscription_failing(p_id uuid, p_since timestamptz) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_org  uuid;
  v_name text;
BEGIN
  UPDATE audit.subscriptions s SET state = 'failing', updated_at = now()
  WHERE s.id = p_id AND s.state = 'active' AND s.failing_since = p_since
  RETURNING s.org_id, s.name INTO v_org, v_name;
  IF FOUND THEN
    PERFORM audit.log_event(v_org, 'audit_stream.failing', p_id::text,
                            jsonb_build_object('name', v_name, 'failing_since', p_since));
  END IF;
END
$$;
COMMENT ON FUNCTION audit.mark_subscription_failing(uuid, timestamptz) IS
  'For the delivery worker: marks a subscription failing (no longer delivered until resumed); records audit_stream.failing.';

-- audit.prune_delivery_attempts removes attempts older than 7 days.
CREATE OR REPLACE FUNCTION audit.prune_delivery_attempts() RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  WITH gone AS (DELETE FROM audit.delivery_attempts WHERE attempted_at < now() - interval '7 days' RETURNING 1)
  SELECT count(*) FROM gone;
END;
COMMENT ON FUNCTION audit.prune_delivery_attempts() IS 'For the delivery worker: removes delivery attempts older than 7 days.';

-- audit.streams: the subscriptions without their sealed destinations, with
-- their lag; what audit_reader may see.
CREATE OR REPLACE VIEW audit.streams AS
SELECT s.id, s.org_id, s.name, s.kind, s.host, s.actions, s.target_types, s.actor_emails, s.state,
       s.position, coalesce(h.seq, 0) AS head_seq, greatest(coalesce(h.seq, 0) - s.position, 0) AS lag,
       s.failing_since, s.created_at, s.updated_at
FROM audit.subscriptions s
LEFT JOIN audit.seal_heads h ON h.org_id = s.org_id;
COMMENT ON VIEW audit.streams IS 'Subscriptions without their sealed destinations, with their lag (the org''s newest seq minus the position).';
