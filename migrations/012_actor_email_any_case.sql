-- The actor filter matches emails in any case (ADA@... finds ada@...): its
-- index is on lower(actor_email), in place of the plain one, so a page of one
-- actor still stops as soon as it is full. Made on each tier table, which
-- makes it on every leaf.
SET LOCAL ROLE audit_owner;

{{ range $tier := list "free" "team" "enterprise" }}
CREATE INDEX events_{{ $tier }}_actor_lower_idx ON audit.events_{{ $tier }} (org_id, lower(actor_email), occurred_at, id);
DROP INDEX audit.events_{{ $tier }}_actor_email_idx;
{{ end }}

RESET ROLE;
