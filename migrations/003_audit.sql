-- The audit schema: retention tiers, the action catalog and one
-- time-partitioned event table per tier. Everything here is owned by
-- audit_owner; functions, views, triggers and grants are in the code package.
CREATE SCHEMA audit AUTHORIZATION audit_owner;
COMMENT ON SCHEMA audit IS 'The audit log: events (view audit.events), the action catalog, retention tiers and partitions.';

SET LOCAL ROLE audit_owner;

CREATE TABLE audit.tiers (
  tier       text     PRIMARY KEY CHECK (tier IN ('free', 'team', 'enterprise')),
  retention  interval NOT NULL CHECK (retention >= interval '1 day')
);
COMMENT ON TABLE audit.tiers IS 'Retention tiers, one per plan; each has its own event table audit.events_<tier>.';
COMMENT ON COLUMN audit.tiers.tier IS 'Tier name, equal to the plan name in cloud.orgs.plan.';
COMMENT ON COLUMN audit.tiers.retention IS 'How long events of orgs on this plan are kept and shown.';
INSERT INTO audit.tiers (tier, retention) VALUES
  ('free', interval '7 days'),
  ('team', interval '30 days'),
  ('enterprise', interval '365 days');

CREATE TABLE audit.actions (
  action        text   PRIMARY KEY CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
  target_type   text   NOT NULL CHECK (target_type IN ('cluster', 'org', 'org_member', 'org_invitation', 'pat', 'billing', 'auth')),
  description   text   NOT NULL,
  required_keys text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE audit.actions IS 'The catalog of auditable actions. audit.log_event refuses any action not listed here.';
COMMENT ON COLUMN audit.actions.action IS 'Action name, <target_type>.<verb>, e.g. cluster.token_rotated.';
COMMENT ON COLUMN audit.actions.target_type IS 'What the action acts on; copied to each event''s target_type.';
COMMENT ON COLUMN audit.actions.description IS 'When the action is recorded.';
COMMENT ON COLUMN audit.actions.required_keys IS 'Keys every event of this action must carry in its metadata.';

{{ range $tier := list "free" "team" "enterprise" }}
CREATE TABLE audit.events_{{ $tier }} (
  id          uuid        NOT NULL,
  org_id      uuid        NOT NULL,
  occurred_at timestamptz NOT NULL,
  action      text        NOT NULL,
  target_type text        NOT NULL,
  target_id   text,
  actor_type  text        NOT NULL CHECK (actor_type IN ('user', 'system')),
  actor_id    uuid,
  actor_email text,
  ip          inet,
  user_agent  text,
  request_id  text,
  metadata    jsonb       NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
  PRIMARY KEY (org_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX events_{{ $tier }}_action_idx ON audit.events_{{ $tier }} (org_id, action, occurred_at, id);
CREATE INDEX events_{{ $tier }}_actor_email_idx ON audit.events_{{ $tier }} (org_id, actor_email, occurred_at, id);

COMMENT ON TABLE audit.events_{{ $tier }} IS 'Events of orgs on the {{ $tier }} plan, partitioned by day (leaves events_{{ $tier }}_pYYYYMMDD, UTC). Raw storage: expired rows may linger until their leaf is dropped; read audit.events for what retention allows.';
COMMENT ON COLUMN audit.events_{{ $tier }}.id IS 'Event id, returned by audit.log_event.';
COMMENT ON COLUMN audit.events_{{ $tier }}.org_id IS 'The org the event belongs to (cloud.orgs.id).';
COMMENT ON COLUMN audit.events_{{ $tier }}.occurred_at IS 'When the action happened; the partition key.';
COMMENT ON COLUMN audit.events_{{ $tier }}.action IS 'What happened, from audit.actions.';
COMMENT ON COLUMN audit.events_{{ $tier }}.target_type IS 'What kind of thing was acted on: cluster, org, org_member, org_invitation, pat, billing or auth.';
COMMENT ON COLUMN audit.events_{{ $tier }}.target_id IS 'Which thing was acted on (a cluster id, a user id, ...).';
COMMENT ON COLUMN audit.events_{{ $tier }}.actor_type IS 'user when someone acted, system when the platform did.';
COMMENT ON COLUMN audit.events_{{ $tier }}.actor_id IS 'The acting user (cloud.users.id); NULL for system actions.';
COMMENT ON COLUMN audit.events_{{ $tier }}.actor_email IS 'The acting user''s email at the time of the action.';
COMMENT ON COLUMN audit.events_{{ $tier }}.ip IS 'Client IP address of the request that caused the action.';
COMMENT ON COLUMN audit.events_{{ $tier }}.user_agent IS 'Client User-Agent of that request, cut to 512 characters.';
COMMENT ON COLUMN audit.events_{{ $tier }}.request_id IS 'Request id, to correlate with application logs.';
COMMENT ON COLUMN audit.events_{{ $tier }}.metadata IS 'Action-specific details (a JSON object); via_pat names the personal access token used, if any.';
{{ end }}

RESET ROLE;
