-- The views DBAs and the API read.

-- audit.events: every event that retention still allows, whatever tier it is
-- stored in, from its org's floor (audit.retention_floor); fine for ad-hoc
-- queries. The planner cannot inline the function (it holds a subquery): in
-- a plain join condition it would run once per event. OFFSET 0 keeps it in a
-- subquery of its own, which the planner runs once per org, either before the
-- join (a full scan) or after it, for only the orgs whose events a query
-- reads (a recent hour across orgs); a grouped subquery of all orgs would
-- call it for every org even then. The API, which needs ordered
-- early-stopping scans, asks audit.org_scope for the floor first and reads
-- the tier tables with it.
CREATE OR REPLACE VIEW audit.events AS
SELECT e.id, e.org_id, e.occurred_at, e.action, e.target_type, e.target_id, e.actor_type,
       e.actor_id, e.actor_email, e.ip, e.user_agent, e.request_id, e.metadata
FROM (
{{- range $i, $tier := $.tiers }}{{ if $i }}
  UNION ALL{{ end }}
  SELECT * FROM audit.events_{{ $tier }}
{{- end }}
) e
JOIN cloud.orgs o ON o.id = e.org_id
JOIN audit.tiers t ON t.tier = o.plan
CROSS JOIN LATERAL (SELECT audit.retention_floor(o.id, t.retention, now()) AS floor OFFSET 0) f
WHERE e.occurred_at >= f.floor;
COMMENT ON VIEW audit.events IS 'All audit events that the org''s current plan still retains (free 7 days, team 30, enterprise 365), across the three tier tables; events an earlier plan let expire stay hidden after an upgrade.';
COMMENT ON COLUMN audit.events.id IS 'Event id.';
COMMENT ON COLUMN audit.events.org_id IS 'The org the event belongs to (cloud.orgs.id).';
COMMENT ON COLUMN audit.events.occurred_at IS 'When the action happened.';
COMMENT ON COLUMN audit.events.action IS 'What happened, from audit.actions.';
COMMENT ON COLUMN audit.events.target_type IS 'cluster, org, org_member, org_invitation, pat, billing or auth.';
COMMENT ON COLUMN audit.events.target_id IS 'Which thing was acted on.';
COMMENT ON COLUMN audit.events.actor_type IS 'user or system.';
COMMENT ON COLUMN audit.events.actor_id IS 'The acting user; NULL for system actions.';
COMMENT ON COLUMN audit.events.actor_email IS 'The acting user''s email at the time.';
COMMENT ON COLUMN audit.events.ip IS 'Client IP address.';
COMMENT ON COLUMN audit.events.user_agent IS 'Client User-Agent.';
COMMENT ON COLUMN audit.events.request_id IS 'Request id, to correlate with application logs.';
COMMENT ON COLUMN audit.events.metadata IS 'Action-specific details; via_pat names the personal access token used, if any.';

-- audit.partitions: one row per leaf, for people and for the retention worker.
CREATE OR REPLACE VIEW audit.partitions AS
SELECT t.tier,
       c.relname::text AS leaf,
       b.range_start,
       b.range_end,
       b.range_end + t.retention AS expires_at,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS estimated_rows,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes,
       i.inhdetachpending AS detach_pending
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
JOIN audit.tiers t ON p.oid = ('audit.events_' || t.tier)::regclass
CROSS JOIN LATERAL (
  SELECT m[1]::timestamptz AS range_start, m[2]::timestamptz AS range_end
  FROM regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') m
) b;
COMMENT ON VIEW audit.partitions IS 'One row per leaf of the tier tables: its range, when all of it is past retention, estimated rows and bytes.';
COMMENT ON COLUMN audit.partitions.tier IS 'free, team or enterprise.';
COMMENT ON COLUMN audit.partitions.leaf IS 'Leaf table name, in schema audit.';
COMMENT ON COLUMN audit.partitions.range_start IS 'First instant the leaf holds (UTC midnight).';
COMMENT ON COLUMN audit.partitions.range_end IS 'First instant past the leaf (the next UTC midnight).';
COMMENT ON COLUMN audit.partitions.expires_at IS 'When every event in the leaf is past its tier''s retention and the worker may drop it.';
COMMENT ON COLUMN audit.partitions.estimated_rows IS 'Row estimate from the last ANALYZE or VACUUM; NULL if never analysed.';
COMMENT ON COLUMN audit.partitions.bytes IS 'Size on disk, indexes included.';
COMMENT ON COLUMN audit.partitions.detach_pending IS 'A concurrent detach started and did not finish; the next retention pass finishes it.';
