-- Whether a token (by its SHA-256) still works for an owner of an org: not
-- revoked, not expired, its user still an owner.
SELECT EXISTS (
  SELECT FROM cloud.pats p
  JOIN cloud.org_members m ON m.user_id = p.user_id
  WHERE p.token_hash = $1 AND p.revoked_at IS NULL AND (p.expires_at IS NULL OR p.expires_at > $3)
    AND m.org_id = $2 AND m.role = 'owner'
)
