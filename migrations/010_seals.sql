-- Seals: every committed event gets, per org, a gap-free sequence number in
-- commit order and a chain hash (docs/feed.md). The sealer reads the events'
-- inserts from the write-ahead log through a publication and a logical
-- replication slot; it writes these tables only through the functions of
-- sql/seals.sql, as a login role of audit_sealer. Events stay immutable:
-- seals live beside them.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_sealer') THEN
    BEGIN
      CREATE ROLE audit_sealer NOLOGIN;
      COMMENT ON ROLE audit_sealer IS 'auditlog: the sealer; may record seals and checkpoints through audit functions. Its login role also needs REPLICATION.';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- made by a concurrent migration of another database
    END;
  END IF;
END
$$;

-- What the sealer decodes: inserts into the tier tables, named by the tier
-- table (not the leaf), so a new leaf needs no change here.
CREATE PUBLICATION auditlog_events
  FOR TABLE {{ range $i, $tier := list "free" "team" "enterprise" }}{{ if $i }}, {{ end }}audit.events_{{ $tier }}{{ end }}
  WITH (publish = 'insert', publish_via_partition_root = true);

SET LOCAL ROLE audit_owner;

CREATE TABLE audit.seals (
  org_id      uuid        NOT NULL,
  seq         bigint      NOT NULL CHECK (seq > 0),
  occurred_at timestamptz NOT NULL,
  event_id    uuid        NOT NULL,
  hash        bytea       NOT NULL CHECK (length(hash) = 32),
  sealed_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT seals_pkey PRIMARY KEY (org_id, seq),
  CONSTRAINT seals_event_key UNIQUE (org_id, occurred_at, event_id)
);
COMMENT ON TABLE audit.seals IS 'One row per sealed event: its per-org sequence number (gap-free, commit order) and chain hash. Rows of removed events are pruned by the sealer (see audit.checkpoints).';
COMMENT ON COLUMN audit.seals.org_id IS 'The event''s org.';
COMMENT ON COLUMN audit.seals.seq IS 'Per-org sequence number: 1, 2, 3 ... in commit order, never reused.';
COMMENT ON COLUMN audit.seals.occurred_at IS 'The event''s occurred_at (with org_id and event_id, its key in the tier tables).';
COMMENT ON COLUMN audit.seals.event_id IS 'The event''s id.';
COMMENT ON COLUMN audit.seals.hash IS 'SHA-256(previous hash || seq as 8 bytes big-endian || canonical JSON of the event); the first previous hash is 32 zero bytes.';
COMMENT ON COLUMN audit.seals.sealed_at IS 'When the sealer recorded the seal.';

CREATE TABLE audit.seal_heads (
  org_id    uuid        PRIMARY KEY,
  seq       bigint      NOT NULL CHECK (seq > 0),
  hash      bytea       NOT NULL CHECK (length(hash) = 32),
  sealed_at timestamptz NOT NULL
);
CREATE INDEX seal_heads_sealed_at_idx ON audit.seal_heads (sealed_at);
COMMENT ON TABLE audit.seal_heads IS 'Per org, the last seal: where the next seq continues, kept when older seals are pruned.';

CREATE TABLE audit.sealer_progress (
  slot      text        PRIMARY KEY,
  lsn       pg_lsn      NOT NULL,
  sealed_at timestamptz NOT NULL,
  events    bigint      NOT NULL DEFAULT 0 CHECK (events >= 0)
);
COMMENT ON TABLE audit.sealer_progress IS 'How far the sealer has sealed: the end of the last transaction it sealed, per replication slot. 0/0 while the slot''s first pass over existing events is unfinished.';

CREATE TABLE audit.seal_keys (
  key_id      text        PRIMARY KEY,
  public_key  bytea       NOT NULL CHECK (length(public_key) = 32),
  valid_from  timestamptz NOT NULL DEFAULT now(),
  valid_until timestamptz
);
COMMENT ON TABLE audit.seal_keys IS 'Ed25519 public keys that signed checkpoints; key_id is the first 16 hex digits of SHA-256(public key). valid_until is set when another key takes over.';

CREATE TABLE audit.checkpoints (
  id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind      text        NOT NULL CHECK (kind IN ('day', 'removal')),
  org_id    uuid        NOT NULL,
  day       date        CHECK ((kind = 'day') = (day IS NOT NULL)),
  seq       bigint      NOT NULL CHECK (seq > 0),
  hash      bytea       NOT NULL CHECK (length(hash) = 32),
  signed_at timestamptz NOT NULL,
  key_id    text        NOT NULL REFERENCES audit.seal_keys (key_id),
  signature bytea       NOT NULL CHECK (length(signature) = 64)
);
CREATE UNIQUE INDEX checkpoints_day_key ON audit.checkpoints (org_id, day) WHERE kind = 'day';
CREATE UNIQUE INDEX checkpoints_removal_key ON audit.checkpoints (org_id, seq) WHERE kind = 'removal';
CREATE INDEX checkpoints_org_idx ON audit.checkpoints (org_id, seq);
COMMENT ON TABLE audit.checkpoints IS 'Signed (org, seq, hash, time): kind day is an org''s latest head of a UTC day, re-signed as the day goes on; kind removal is the last seal removed with expired events, from which the chain continues.';

RESET ROLE;
