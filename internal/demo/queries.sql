-- The demo control plane's statements, one per name; demo.go runs them by
-- name. Each mutation runs in a transaction that also records its audit event.

-- name: lock
-- One demo run at a time per database.
SELECT pg_advisory_xact_lock(7246160914);

-- name: existing-orgs
SELECT count(*) FROM cloud.orgs WHERE id = ANY ($1::uuid[]);

-- name: list-orgs
SELECT id, name, plan FROM cloud.orgs WHERE id = ANY ($1::uuid[]) ORDER BY id;

-- name: retention
-- How far back a plan keeps events, in seconds.
SELECT extract(epoch FROM retention)::bigint FROM audit.tiers WHERE tier = $1;

-- name: insert-org
INSERT INTO cloud.orgs (id, name, plan, created_at) VALUES ($1, $2, $3, $4);

-- name: insert-org-settings
INSERT INTO demo.org_settings (org_id, domains, auto_join_role) VALUES ($1, '{}', NULL);

-- name: insert-user
INSERT INTO cloud.users (email, created_at) VALUES ($1, $2) RETURNING id;

-- name: insert-member
INSERT INTO cloud.org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4);

-- name: insert-pat
-- A token of the past: only its hash is kept, the token itself is never shown.
INSERT INTO cloud.pats (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id;

-- name: insert-cluster
INSERT INTO demo.clusters (org_id, name, env, region, agent_version, token_hash, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id;

-- name: insert-subscription
INSERT INTO demo.subscriptions (org_id, subscription_id, quantity) VALUES ($1, $2, $3);

-- name: rename-cluster
UPDATE demo.clusters c SET name = $2 FROM demo.clusters old
WHERE c.id = $1 AND old.id = c.id RETURNING old.name;

-- name: rotate-cluster-token
UPDATE demo.clusters SET token_hash = $2 WHERE id = $1;

-- name: delete-cluster
UPDATE demo.clusters SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING name;

-- name: set-org-domains
UPDATE demo.org_settings s SET domains = $2, auto_join_role = $3 FROM demo.org_settings old
WHERE s.org_id = $1 AND old.org_id = s.org_id RETURNING old.domains, old.auto_join_role;

-- name: invite
INSERT INTO demo.invitations (org_id, email, role, invited_by) VALUES ($1, $2, $3, $4) RETURNING id;

-- name: close-invitation
-- Accept or revoke a pending invitation; says who it was for, as what, and who sent it.
UPDATE demo.invitations i SET status = $2 FROM cloud.users u
WHERE i.id = $1 AND i.status = 'pending' AND u.id = i.invited_by
RETURNING i.email, i.role, u.email;

-- name: change-role
UPDATE cloud.org_members m SET role = $3 FROM cloud.org_members old
WHERE m.org_id = $1 AND m.user_id = $2 AND old.org_id = m.org_id AND old.user_id = m.user_id
RETURNING old.role;

-- name: remove-member
DELETE FROM cloud.org_members m USING cloud.users u
WHERE m.org_id = $1 AND m.user_id = $2 AND u.id = m.user_id RETURNING u.email;

-- name: revoke-pat
UPDATE cloud.pats SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING name;

-- name: change-plan
-- The plan change the audit log's trigger notes in audit.plan_changes.
UPDATE cloud.orgs SET plan = $2 WHERE id = $1;

-- name: change-quantity
UPDATE demo.subscriptions s SET quantity = $2 FROM demo.subscriptions old
WHERE s.org_id = $1 AND old.org_id = s.org_id RETURNING s.subscription_id, old.quantity;
