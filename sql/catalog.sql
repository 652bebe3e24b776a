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
