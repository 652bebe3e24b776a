-- The actor filter folds case beyond ASCII (ÉMILE@... finds émile@...): lower()
-- follows the database's locale, and a C-locale database lowers only A to Z,
-- so the index and the filter lower by the ICU root collation, the same on
-- any database. Made on each tier table, which makes it on every leaf.
SET LOCAL ROLE audit_owner;

{{ range $tier := list "free" "team" "enterprise" }}
CREATE INDEX events_{{ $tier }}_actor_icu_idx ON audit.events_{{ $tier }} (org_id, lower(actor_email COLLATE "und-x-icu"), occurred_at, id);
DROP INDEX audit.events_{{ $tier }}_actor_lower_idx;
{{ end }}

RESET ROLE;
