-- Delivery: an org's subscriptions (a rule and a destination), each with its
-- own position in the org's feed, and the attempts of the delivery worker
-- (docs/delivery.md). The control plane manages subscriptions through the
-- functions of sql/delivery.sql; the worker, as a login role of
-- audit_deliverer, reads them and records its attempts through functions.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_deliverer') THEN
    BEGIN
      CREATE ROLE audit_deliverer NOLOGIN;
      COMMENT ON ROLE audit_deliverer IS 'auditlog: the delivery worker; reads sealed events and subscriptions, records attempts and positions through audit functions.';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- made by a concurrent migration of another database
    END;
  END IF;
END
$$;

SET LOCAL ROLE audit_owner;

-- The subscriptions' own events (audit_stream.*) have a target type of their own.
ALTER TABLE audit.actions DROP CONSTRAINT actions_target_type_check,
  ADD CONSTRAINT actions_target_type_check
  CHECK (target_type IN ('cluster', 'org', 'org_member', 'org_invitation', 'pat', 'billing', 'auth', 'audit_stream'));

CREATE TABLE audit.delivery_keys (
  key_id     text        PRIMARY KEY,
  public_key bytea       NOT NULL CHECK (length(public_key) = 32),
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit.delivery_keys IS 'X25519 public keys of the delivery worker; destinations are sealed to one of them. key_id is the first 16 hex digits of SHA-256(public key).';

CREATE TABLE audit.subscriptions (
  id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id        uuid        NOT NULL,
  name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  kind          text        NOT NULL CHECK (kind IN ('webhook', 'slack', 'splunk_hec')),
  host          text        NOT NULL CHECK (length(host) BETWEEN 1 AND 255),
  actions       text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(actions) <= 100),
  target_types  text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(target_types) <= 100),
  actor_emails  text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(actor_emails) <= 100),
  key_id        text        NOT NULL REFERENCES audit.delivery_keys (key_id),
  sealed        bytea       NOT NULL CHECK (length(sealed) <= 8192),
  state         text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'failing')),
  position      bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
  failing_since timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT subscriptions_name_key UNIQUE (org_id, name)
);
COMMENT ON TABLE audit.subscriptions IS 'An org''s event streams: a rule (actions exact or prefix.*, target types, actor emails; empty means all) and a destination, sealed to the delivery worker''s key.';
COMMENT ON COLUMN audit.subscriptions.host IS 'The destination''s host, shown; the URL and secrets are only in sealed.';
COMMENT ON COLUMN audit.subscriptions.sealed IS 'The destination (URL, secret or token) as JSON, encrypted to the public key key_id (docs/delivery.md); only the worker''s private key opens it.';
COMMENT ON COLUMN audit.subscriptions.position IS 'The last seq of the org''s feed delivered (or skipped by the rule).';
COMMENT ON COLUMN audit.subscriptions.failing_since IS 'When the current run of failed attempts began; NULL after a success.';

CREATE TABLE audit.delivery_attempts (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subscription_id uuid        NOT NULL REFERENCES audit.subscriptions (id) ON DELETE CASCADE,
  org_id          uuid        NOT NULL,
  attempted_at    timestamptz NOT NULL,
  status          integer,
  latency_ms      integer     NOT NULL CHECK (latency_ms >= 0),
  first_seq       bigint      NOT NULL,
  last_seq        bigint      NOT NULL,
  events          integer     NOT NULL CHECK (events >= 0),
  error           text        CHECK (length(error) <= 1000)
);
CREATE INDEX delivery_attempts_subscription_idx ON audit.delivery_attempts (subscription_id, attempted_at DESC);
CREATE INDEX delivery_attempts_attempted_at_idx ON audit.delivery_attempts (attempted_at);
COMMENT ON TABLE audit.delivery_attempts IS 'Each delivery attempt: when, the HTTP status (NULL: no response), latency, the seqs it covered and the error; kept 7 days.';

RESET ROLE;
