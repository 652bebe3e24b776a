-- The control-plane tables the audit log relies on. A host application that
-- already has its own maps them onto these names (see docs/recording.md).
CREATE SCHEMA cloud;
COMMENT ON SCHEMA cloud IS 'Control-plane tables (orgs, users, members, personal access tokens) the audit log relies on.';

CREATE TABLE cloud.orgs (
  id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  plan       text        NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'team', 'enterprise')),
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cloud.orgs IS 'Organizations. The plan decides the audit retention tier of the org''s events.';
COMMENT ON COLUMN cloud.orgs.id IS 'Org id; audit events reference it as org_id.';
COMMENT ON COLUMN cloud.orgs.name IS 'Display name.';
COMMENT ON COLUMN cloud.orgs.plan IS 'Billing plan: free (7 days of audit log), team (30) or enterprise (365).';
COMMENT ON COLUMN cloud.orgs.created_at IS 'When the org was created.';

CREATE TABLE cloud.users (
  id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  email      text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON cloud.users (lower(email));
COMMENT ON TABLE cloud.users IS 'People who can sign in; one email each, compared case-insensitively.';
COMMENT ON COLUMN cloud.users.id IS 'User id; audit events reference it as actor_id.';
COMMENT ON COLUMN cloud.users.email IS 'Sign-in email; recorded on audit events as actor_email.';
COMMENT ON COLUMN cloud.users.created_at IS 'When the user signed up.';

CREATE TABLE cloud.org_members (
  org_id     uuid        NOT NULL REFERENCES cloud.orgs ON DELETE CASCADE,
  user_id    uuid        NOT NULL REFERENCES cloud.users ON DELETE CASCADE,
  role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_id_idx ON cloud.org_members (user_id);
COMMENT ON TABLE cloud.org_members IS 'Who belongs to which org, and as what. Only owners may read an org''s audit log.';
COMMENT ON COLUMN cloud.org_members.org_id IS 'The org.';
COMMENT ON COLUMN cloud.org_members.user_id IS 'The member.';
COMMENT ON COLUMN cloud.org_members.role IS 'owner, admin or member.';
COMMENT ON COLUMN cloud.org_members.created_at IS 'When the user joined the org.';

CREATE TABLE cloud.pats (
  id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id    uuid        NOT NULL REFERENCES cloud.users ON DELETE CASCADE,
  name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  token_hash bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX pats_user_id_idx ON cloud.pats (user_id);
COMMENT ON TABLE cloud.pats IS 'Personal access tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once, when minted.';
COMMENT ON COLUMN cloud.pats.id IS 'Token id.';
COMMENT ON COLUMN cloud.pats.user_id IS 'The user the token acts as.';
COMMENT ON COLUMN cloud.pats.name IS 'Name given by the user; recorded as metadata.via_pat on the events of actions taken with it.';
COMMENT ON COLUMN cloud.pats.token_hash IS 'SHA-256 of the token.';
COMMENT ON COLUMN cloud.pats.created_at IS 'When the token was minted.';
COMMENT ON COLUMN cloud.pats.expires_at IS 'When the token stops working; NULL: never.';
COMMENT ON COLUMN cloud.pats.revoked_at IS 'When the token was revoked; NULL: not revoked.';
