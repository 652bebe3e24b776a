-- The demo's own control-plane tables, made by `auditlog demo` (not a
-- migration: they are not part of the audit log). They stand for what a real
-- control plane keeps beside cloud.orgs, cloud.users, cloud.org_members and
-- cloud.pats, so that every demo event acts on a row that exists.
CREATE SCHEMA IF NOT EXISTS demo;
COMMENT ON SCHEMA demo IS 'Demo control plane made by `auditlog demo`: clusters, invitations, org settings, subscriptions.';

CREATE TABLE IF NOT EXISTS demo.clusters (
  id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id        uuid        NOT NULL REFERENCES cloud.orgs ON DELETE CASCADE,
  name          text        NOT NULL,
  env           text        NOT NULL,
  region        text        NOT NULL,
  agent_version text        NOT NULL,
  token_hash    bytea       NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz
);
COMMENT ON TABLE demo.clusters IS 'Clusters registered by the demo orgs; token_hash is the SHA-256 of the install token.';

CREATE TABLE IF NOT EXISTS demo.invitations (
  id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id     uuid        NOT NULL REFERENCES cloud.orgs ON DELETE CASCADE,
  email      text        NOT NULL,
  role       text        NOT NULL,
  invited_by uuid        NOT NULL REFERENCES cloud.users,
  status     text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'revoked')),
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE demo.invitations IS 'Invitations to join a demo org.';

CREATE TABLE IF NOT EXISTS demo.org_settings (
  org_id         uuid   PRIMARY KEY REFERENCES cloud.orgs ON DELETE CASCADE,
  domains        text[] NOT NULL DEFAULT '{}',
  auto_join_role text
);
COMMENT ON TABLE demo.org_settings IS 'Per-org settings: email domains whose users join automatically, and as what.';

CREATE TABLE IF NOT EXISTS demo.subscriptions (
  org_id          uuid PRIMARY KEY REFERENCES cloud.orgs ON DELETE CASCADE,
  subscription_id text NOT NULL,
  quantity        int  NOT NULL
);
COMMENT ON TABLE demo.subscriptions IS 'Stripe subscriptions of the paying demo orgs: the number of clusters paid for.';
