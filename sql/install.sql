-- The audit log's code package, reinstalled in one transaction by every
-- `auditlog migrate`. Every statement must be safe to run again.

-- As the migrating role, which owns the cloud schema: what audit_owner needs
-- of the control-plane tables.
{{ template "cloud_grants.sql" . }}

-- Objects of the audit schema are made as audit_owner, so it owns them.
SET LOCAL ROLE audit_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE audit_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
{{ template "catalog.sql" . }}
{{ template "immutability.sql" . }}
{{ template "leaves.sql" . }}
{{ template "log_event.sql" . }}
{{ template "plans.sql" . }}
{{ template "import.sql" . }}
{{ template "views.sql" . }}
{{ template "retier.sql" . }}
{{ template "retention.sql" . }}
{{ template "seals.sql" . }}
{{ template "api.sql" . }}
{{ template "delivery.sql" . }}
{{ template "grants.sql" . }}
RESET ROLE;

-- As the owner of the cloud tables again: the triggers on them.
{{ template "cloud_triggers.sql" . }}
