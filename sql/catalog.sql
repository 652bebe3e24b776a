-- The action catalog: every action of the product documentation, plus
-- org_member.role_changed. Upserted, so editing a row here and migrating
-- updates it.
INSERT INTO audit.actions (action, target_type, description, required_keys) VALUES
  ('cluster.created',                 'cluster',        'A cluster is registered',                                  '{name}'),
  ('cluster.updated',                 'cluster',        'Name / env / labels change',                               '{changes}'),
  ('cluster.deleted',                 'cluster',        'Cluster removed from the org',                             '{name}'),
  ('cluster.token_rotated',           'cluster',        'Install token rotated',                                    '{}'),
  ('cluster.action_denied',           'cluster',        'A privileged action was rejected by Cloud RBAC',           '{operation,reason}'),
  ('cluster.agent.upgrade_requested', 'cluster',        'An owner triggered an in-cluster Radar upgrade',           '{from_version,to_version}'),
  ('org.created',                     'org',            'New org',                                                  '{name}'),
  ('org.updated',                     'org',            'Name / domains / default role changed',                    '{changes}'),
  ('org.sso.portal_opened',           'org',            'An owner launched the WorkOS Admin Portal',                '{}'),
  ('org_invitation.created',          'org_invitation', 'Invite sent',                                              '{email,role}'),
  ('org_invitation.accepted',         'org_invitation', 'Invite accepted',                                          '{email}'),
  ('org_invitation.revoked',          'org_invitation', 'Pending invite revoked',                                   '{email}'),
  ('org_member.joined',               'org_member',     'User joined via accepted invite',                          '{invited_by,role}'),
  ('org_member.auto_joined',          'org_member',     'User joined via domain auto-join',                         '{domain,role}'),
  ('org_member.sso_joined',           'org_member',     'User joined via SSO sign-in',                              '{role}'),
  ('org_member.removed',              'org_member',     'Member removed',                                           '{email}'),
  ('org_member.role_changed',         'org_member',     'A member''s role changed',                                 '{previous_role,new_role}'),
  ('pat.created',                     'pat',            'Token minted',                                             '{name}'),
  ('pat.revoked',                     'pat',            'Token revoked',                                            '{name}'),
  ('billing.checkout_started',        'billing',        'Stripe Checkout session opened',                           '{plan}'),
  ('billing.subscription_changed',    'billing',        'Plan, quantity, or status changed (upgrades, downgrades, payment failures, quantity sync)',
                                                                                                                    '{subscription_id,previous_plan,new_plan,previous_quantity,new_quantity}'),
  ('auth.signin',                     'auth',           'User signs in',                                            '{method}'),
  ('auth.signout',                    'auth',           'User signs out',                                           '{}'),
  ('audit_stream.created',            'audit_stream',   'An owner subscribed a destination to the org''s events',   '{name,kind,host}'),
  ('audit_stream.updated',            'audit_stream',   'A subscription paused or resumed',                         '{name,changes,previous_state,new_state}'),
  ('audit_stream.deleted',            'audit_stream',   'A subscription removed',                                   '{name}'),
  ('audit_stream.failing',            'audit_stream',   'Delivery kept failing: the subscription stopped',          '{name,failing_since}')
ON CONFLICT (action) DO UPDATE
  SET target_type = EXCLUDED.target_type,
      description = EXCLUDED.description,
      required_keys = EXCLUDED.required_keys
  WHERE (actions.target_type, actions.description, actions.required_keys)
        IS DISTINCT FROM (EXCLUDED.target_type, EXCLUDED.description, EXCLUDED.required_keys);

-- How each action reads as a sentence, for people (the Activity page):
-- {actor} is who acted, {target} the target's id, any other {key} the
-- metadata's value, {a|b} the first of them present. The page and any other
-- reader render the same text (GET /api/audit/actions serves it).
CREATE OR REPLACE VIEW audit.action_sentences (action, sentence) AS VALUES
  ('cluster.created',                 '{actor} registered cluster "{name}"'),
  ('cluster.updated',                 '{actor} changed the {changes} of cluster {name|target}'),
  ('cluster.deleted',                 '{actor} deleted cluster "{name}"'),
  ('cluster.token_rotated',           '{actor} rotated the install token of cluster {name|target}'),
  ('cluster.action_denied',           '{actor} was denied {operation} on cluster {name|target}: {reason}'),
  ('cluster.agent.upgrade_requested', '{actor} asked to upgrade the agent of cluster {name|target} from {from_version} to {to_version}'),
  ('org.created',                     '{actor} created the organization "{name}"'),
  ('org.updated',                     '{actor} changed the organization''s {changes}'),
  ('org.sso.portal_opened',           '{actor} opened the SSO admin portal'),
  ('org_invitation.created',          '{actor} invited {email} as {role}'),
  ('org_invitation.accepted',         '{actor} accepted the invitation for {email}'),
  ('org_invitation.revoked',          '{actor} revoked the invitation for {email}'),
  ('org_member.joined',               '{actor} joined as {role}, invited by {invited_by}'),
  ('org_member.auto_joined',          '{actor} joined as {role} through the domain {domain}'),
  ('org_member.sso_joined',           '{actor} joined as {role} through SSO'),
  ('org_member.removed',              '{actor} removed {email} from the organization'),
  ('org_member.role_changed',         '{actor} changed {email|target}''s role from {previous_role} to {new_role}'),
  ('pat.created',                     '{actor} created token "{name}"'),
  ('pat.revoked',                     '{actor} revoked token "{name}"'),
  ('billing.checkout_started',        '{actor} started a checkout for the {plan} plan'),
  ('billing.subscription_changed',    '{actor} changed the subscription from {previous_plan} to {new_plan}'),
  ('auth.signin',                     '{actor} signed in with {method}'),
  ('auth.signout',                    '{actor} signed out'),
  ('audit_stream.created',            '{actor} created the {kind} stream "{name}" to {host}'),
  ('audit_stream.updated',            '{actor} changed the {changes} of stream "{name}" from {previous_state} to {new_state}'),
  ('audit_stream.deleted',            '{actor} deleted the stream "{name}"'),
  ('audit_stream.failing',            '{actor} stopped the stream "{name}", failing since {failing_since}');

-- audit.sentence_json shows an object, an array or a number for
-- audit.sentence_value (below): an object as its keys, an array as its
-- items (each shown, a missing one empty), both joined by commas, and a
-- number as the shortest decimal that reads back as the same double,
-- without an exponent (one beyond a double's range as it is, one below it
-- as 0). Keys, and items that are all strings, without a backslash in their
-- JSON (nothing escaped) are cut out of its text: no query per call.
CREATE OR REPLACE FUNCTION audit.sentence_json(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  n numeric;
  f float8;
  list text;
BEGIN
  CASE jsonb_typeof(v)
  WHEN 'object' THEN
    list := jsonb_path_query_array(v, '$.keyvalue().key')::text;
    IF list = '[]' THEN
      RETURN '';
    ELSIF strpos(list, '\') = 0 AND list !~ '"(0|[1-9][0-9]*)"' THEN
      RETURN replace(substr(list, 3, length(list) - 4), '", "', ', ');
    END IF;
    -- As JavaScript's Object.keys: array indexes (whole numbers below
    -- 2^32 - 1) first, in numeric order, then the others as they come.
    RETURN (SELECT string_agg(k, ', ' ORDER BY x.ix, i)
            FROM jsonb_object_keys(v) WITH ORDINALITY o(k, i),
                 LATERAL (SELECT CASE WHEN k ~ '^(0|[1-9][0-9]{0,9})$' AND k::numeric < 4294967295 THEN k::numeric END) x(ix));
  WHEN 'array' THEN
    list := v::text;
    IF list = '[]' THEN
      RETURN '';
    ELSIF strpos(list, '\') = 0 AND NOT jsonb_path_exists(v, '$[*] ? (@.type() != "string")') THEN
      RETURN replace(substr(list, 3, length(list) - 4), '", "', ', ');
    END IF;
    RETURN (SELECT string_agg(coalesce(audit.sentence_value(x), ''), ', ' ORDER BY i)
            FROM jsonb_array_elements(v) WITH ORDINALITY a(x, i));
  ELSE
    n := v::numeric;
    -- Halfway from the largest double to 2^1024 and beyond rounds to
    -- infinity; half the smallest denormal (2^-1075) and below, to zero.
    -- Both exact: numeric's powers of 2 and products are.
    IF abs(n) >= 2::numeric ^ 1024 - 2::numeric ^ 970 THEN
      RETURN v::text;
    ELSIF n <> 0 AND abs(n) * 2::numeric ^ 1075 <= 1 THEN
      RETURN '0';
    END IF;
    -- float8's text is the shortest that reads back; as JavaScript writes
    -- it, in decimal from 1e-6 to below 1e21 (numeric's text drops the
    -- exponent), else with an exponent without leading zeros (1e+21, 1.5e-7).
    f := n::float8;
    IF f = 0 OR (abs(f) >= 1e-6 AND abs(f) < 1e21) THEN
      RETURN f::text::numeric::text;
    END IF;
    RETURN regexp_replace(f::text, 'e([+-])0*', 'e\1');
  END CASE;
END;
$$;

-- audit.sentence_value is a metadata value as a sentence shows it (as the
-- page does, with JavaScript's String()): a string as it is, true or false;
-- NULL (missing) when it is missing, null or shows as nothing (an empty
-- string, object or list). Inlined into audit.event_sentence; other types
-- go to audit.sentence_json.
CREATE OR REPLACE FUNCTION audit.sentence_value(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE jsonb_typeof(v)
  WHEN 'string' THEN nullif(v #>> '{}', '')
  WHEN 'boolean' THEN v #>> '{}'
  WHEN 'object' THEN nullif(audit.sentence_json(v), '')
  WHEN 'array' THEN nullif(audit.sentence_json(v), '')
  WHEN 'number' THEN audit.sentence_json(v)
END;

-- audit.sentence_visible is a value with its control and bidirectional
-- formatting characters shown as U+FFFD, as the page and Slack show them:
-- a value cannot start a line of its own or reorder the sentence.
CREATE OR REPLACE FUNCTION audit.sentence_visible(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN translate(v, U&'\0001\0002\0003\0004\0005\0006\0007\0008\0009\000a\000b\000c\000d\000e\000f\0010\0011\0012\0013\0014\0015\0016\0017\0018\0019\001a\001b\001c\001d\001e\001f\007f\0080\0081\0082\0083\0084\0085\0086\0087\0088\0089\008a\008b\008c\008d\008e\008f\0090\0091\0092\0093\0094\0095\0096\0097\0098\0099\009a\009b\009c\009d\009e\009f\061c\200e\200f\202a\202b\202c\202d\202e\2066\2067\2068\2069', '����������������������������������������������������������������������������');

-- audit.event_sentence is an event as its action's sentence reads, the same
-- text as the Activity page and Slack messages (internal/sentence): {actor}
-- is System, the email, the id or Unknown user; {target} the target's id;
-- {action} the action; any other {key} the metadata's value
-- (audit.sentence_value); {a|b} the first of them present, and … when none
-- is. An action without a sentence reads as who acted and its code. With
-- as_cell, neutralised as a CSV cell (audit.csv_cell). The exports select it.
--
-- Written here from audit.action_sentences on every install, one CASE branch
-- per action joining its pieces with || (none is null; cheaper than
-- concat()): the sentences stay in one place, and no template is parsed per
-- row. PL/pgSQL plans the CASE once per session; inlined into each statement,
-- it took 5 to 15 ms to plan, which an export pays per window.
DO $$
DECLARE
  actor CONSTANT text := $a$CASE WHEN actor_type = 'system' THEN 'System' ELSE coalesce(nullif(actor_email, ''), actor_id::text, 'Unknown user') END$a$;
  branches text := '';
  s record;
  parts text[];
  keys text[];
  pieces text[];
  alternatives text[];
  k text;
BEGIN
  FOR s IN SELECT action, sentence FROM audit.action_sentences WHERE sentence <> '' ORDER BY action LOOP
    parts := regexp_split_to_array(s.sentence, '\{[a-z_|]+\}');
    keys := ARRAY(SELECT m[1] FROM regexp_matches(s.sentence, '\{([a-z_|]+)\}', 'g') AS m);
    pieces := '{}';
    FOR i IN 1 .. cardinality(parts) LOOP
      IF parts[i] <> '' THEN
        pieces := pieces || quote_literal(parts[i]);
      END IF;
      CONTINUE WHEN i > cardinality(keys);
      alternatives := '{}';
      FOREACH k IN ARRAY string_to_array(keys[i], '|') LOOP
        alternatives := alternatives || CASE k
          WHEN 'actor' THEN actor
          WHEN 'target' THEN $t$nullif(target_id, '')$t$
          WHEN 'action' THEN 'action'
          ELSE format('audit.sentence_value(metadata -> %L)', k)
        END;
      END LOOP;
      pieces := pieces || format('audit.sentence_visible(coalesce(%s, %L))', array_to_string(alternatives, ', '), '…');
    END LOOP;
    branches := branches || format(E'\n    WHEN %L THEN %s', s.action, array_to_string(pieces, ' || '));
  END LOOP;
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION audit.event_sentence(action text, actor_type text, actor_id uuid, actor_email text, target_id text,
                                                metadata jsonb, as_cell boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $body$
DECLARE
  sentence CONSTANT text := CASE action%s
    ELSE audit.sentence_visible(%s) || ' ' || action
  END;
BEGIN
  IF as_cell THEN
    RETURN audit.csv_cell(sentence);
  END IF;
  RETURN sentence;
END
$body$
$f$, branches, actor);
END;
$$;
COMMENT ON FUNCTION audit.event_sentence(text, text, uuid, text, text, jsonb, boolean) IS
  'An event as its action''s sentence (audit.action_sentences) reads: the text of the Activity page and Slack messages; with as_cell, neutralised as a CSV cell. Rewritten from the sentences by every install.';
