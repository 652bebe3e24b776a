-- Privileges per role (docs/dba.md). PUBLIC gets nothing in schema audit.
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO audit_writer, audit_reader, audit_maintainer, audit_sealer, audit_deliverer;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;

-- audit_writer: record events, nothing else.
GRANT EXECUTE ON FUNCTION audit.log_event(uuid, text, text, jsonb, uuid, text, text, inet, text, text) TO audit_writer;
GRANT EXECUTE ON FUNCTION audit.set_context(uuid, text, text, inet, text, text) TO audit_writer;

-- audit_maintainer: the bulk import. It stages rows in the session's
-- pg_temp.import_rows (INSERT only, granted as audit.import_begin makes it)
-- and loads them through audit.import_batch's checks: no DML on any audit table.
GRANT EXECUTE ON FUNCTION audit.import_begin(), audit.import_batch() TO audit_maintainer;

-- audit_reader: read everything, write nothing. Leaves get SELECT from
-- audit.protect_leaf as they are made.
GRANT SELECT ON audit.events, audit.partitions, audit.actions, audit.action_sentences, audit.tiers, audit.plan_changes,
                {{ range $i, $t := $.tiers }}{{ if $i }}, {{ end }}audit.events_{{ $t }}{{ end }}
  TO audit_reader;
-- audit.events calls audit.retention_floor as its reader, not as its owner.
GRANT EXECUTE ON FUNCTION audit.org_scope(uuid, timestamptz), audit.retention_floor(uuid, interval, timestamptz)
  TO audit_reader;

-- audit_reader: what the retention worker did, and what keeps expired leaves.
GRANT SELECT ON audit.retention_runs TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.retention_holdups(timestamptz) TO audit_reader;

-- audit_maintainer: the retention worker's steps, each a function that checks
-- its own preconditions (expiry, readiness, the clock); no direct DML. The
-- worker's one DDL statement, DETACH PARTITION ... CONCURRENTLY, needs
-- audit_owner (docs/retention.md).
GRANT EXECUTE ON FUNCTION
  audit.retention_clock(timestamptz, boolean),
  audit.missing_leaves(integer, timestamptz),
  audit.premake_leaves(integer, timestamptz),
  audit.expired_leaves(timestamptz),
  audit.drop_leaf(text, timestamptz),
  audit.fence_plan_changes(),
  audit.pending_plan_changes(timestamptz),
  audit.retier(bigint, integer, timestamptz),
  audit.record_retention_run(timestamptz, timestamptz, text, text[], text[], uuid[], bigint, bigint, text[])
  TO audit_maintainer;

-- The API connects as audit_reader: it authenticates tokens, signs cursors,
-- neutralises CSV cells and writes the exports' sentences through these
-- functions, and reads nothing of the control-plane tables itself.
-- audit.api_keys is readable by no role.
GRANT EXECUTE ON FUNCTION audit.authenticate(bytea, uuid, timestamptz), audit.api_key(text),
                          audit.csv_cell(text), audit.org_name(uuid),
                          audit.event_sentence(text, text, uuid, text, text, jsonb, boolean), audit.sentence_value(jsonb),
                          audit.sentence_json(jsonb), audit.sentence_visible(text)
  TO audit_reader;

-- audit_reader: the seals, checkpoints and keys that prove the log.
GRANT SELECT ON audit.seals, audit.seal_heads, audit.sealer_progress, audit.seal_keys, audit.checkpoints,
                audit.stored_events, audit.sealed_events, audit.unsealed_events
  TO audit_reader;

-- audit_sealer: read the events it seals and where it stands; record seals,
-- progress, keys and checkpoints only through functions that check them.
GRANT SELECT ON {{ range $i, $t := $.tiers }}{{ if $i }}, {{ end }}audit.events_{{ $t }}{{ end }},
                audit.stored_events, audit.unsealed_events, audit.seals, audit.seal_heads, audit.sealer_progress
  TO audit_sealer;
GRANT EXECUTE ON FUNCTION
  audit.record_seals(text, pg_lsn, uuid[], bigint[], timestamptz[], uuid[], bytea[], bigint[]),
  audit.set_sealer_progress(text, pg_lsn),
  audit.register_seal_key(text, bytea),
  audit.unsigned_heads(integer),
  audit.record_checkpoints(text, text, uuid[], bigint[], bytea[], timestamptz[], bytea[]),
  audit.prune_seals(integer)
  TO audit_sealer;

-- audit_writer: the control plane manages subscriptions through functions
-- that check them and record an event each; it reads only the key to seal
-- destinations to.
GRANT EXECUTE ON FUNCTION
  audit.delivery_key(),
  audit.subscribe(uuid, text, text, text, text, bytea, text[], text[], text[]),
  audit.pause_subscription(uuid, uuid),
  audit.resume_subscription(uuid, uuid),
  audit.unsubscribe(uuid, uuid)
  TO audit_writer;

-- audit_reader: subscriptions without their sealed destinations, and the
-- attempts.
GRANT SELECT ON audit.streams, audit.delivery_attempts TO audit_reader;

-- audit_deliverer: read the sealed events, the subscriptions and the
-- catalog (how Slack messages read); record attempts, positions and its key
-- only through functions that check them.
GRANT SELECT ON audit.events_free, audit.events_team, audit.events_enterprise,
                audit.seals, audit.seal_heads, audit.subscriptions, audit.streams, audit.delivery_keys,
                audit.actions, audit.action_sentences
  TO audit_deliverer;
GRANT EXECUTE ON FUNCTION
  audit.org_scope(uuid, timestamptz),
  audit.org_name(uuid),
  audit.register_delivery_key(text, bytea),
  audit.record_delivery(uuid, bigint, bigint, boolean, timestamptz, integer, integer, bigint, bigint, integer, text),
  audit.mark_subscription_failing(uuid, timestamptz),
  audit.prune_delivery_attempts()
  TO audit_deliverer;
