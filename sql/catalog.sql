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
  ('auth.signout',                    'auth',           'User signs out',                                           '{}')
ON CONFLICT (action) DO UPDATE
  SET target_type = EXCLUDED.target_type,
      description = EXCLUDED.description,
      required_keys = EXCLUDED.required_keys
  WHERE (actions.target_type, actions.description, actions.required_keys)
        IS DISTINCT FROM (EXCLUDED.target_type, EXCLUDED.description, EXCLUDED.required_keys);
