-- audit.retier_floor was replaced by audit.retier_scope (sql/retier.sql); the
-- code package no longer drops it on every install.
SET LOCAL ROLE audit_owner;

DROP FUNCTION IF EXISTS audit.retier_floor(bigint, timestamptz);

RESET ROLE;
