// Package pat mints personal access tokens the way the control plane does:
// a random token shown once, only its SHA-256 stored in cloud.pats, and a
// pat.created audit event in the same transaction.
package pat

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
)

// Prefix starts every token, so a leaked one is recognisable (secret scanners).
const Prefix = "alpat_"

// tokenAlphabet is base62: tokens survive URLs, shells and double-clicks.
const tokenAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// tokenChars random characters carry log2(62)*43 ≈ 256 bits.
const tokenChars = 43

// Generate returns a new random token.
func Generate() string {
	var b strings.Builder
	b.WriteString(Prefix)
	buf := make([]byte, 1)
	for b.Len() < len(Prefix)+tokenChars {
		rand.Read(buf)
		// Reject bytes that would bias the choice (256 is not a multiple of 62).
		if int(buf[0]) < 256-256%len(tokenAlphabet) {
			b.WriteByte(tokenAlphabet[int(buf[0])%len(tokenAlphabet)])
		}
	}
	return b.String()
}

// Hash is what is stored for a token: its SHA-256.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// MintOpts describe a token to mint.
type MintOpts struct {
	// OrgID is the org the token is minted in; its pat.created event goes there.
	OrgID string
	// UserEmail is the member the token acts as.
	UserEmail string
	// Name labels the token; it is recorded as metadata.via_pat on what it does.
	Name string
	// ExpiresIn, if not zero, is how long the token works, at most
	// MaxLifetime.
	ExpiresIn time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Minted is a new token. Token is shown once and never stored.
type Minted struct {
	ID        string
	Token     string
	UserID    string
	ExpiresAt *time.Time
}

// ErrNotMember is returned when the email is not a member of the org.
var ErrNotMember = errors.New("not a member of the org")

// MaxLifetime bounds a token's expiry: a token meant to outlive a year is
// one that works until revoked (no expiry), which says so.
const MaxLifetime = 365 * 24 * time.Hour

// Mint stores a new token for a member of an org and records pat.created,
// acting as that member, in transaction tx.
func Mint(ctx context.Context, tx pgx.Tx, o MintOpts) (Minted, error) {
	if o.Name == "" || len(o.Name) > 100 {
		return Minted{}, fmt.Errorf("token name must be 1 to 100 characters")
	}
	if o.ExpiresIn < 0 || o.ExpiresIn > MaxLifetime {
		return Minted{}, fmt.Errorf("expiry must be in the future, at most %d days ahead", MaxLifetime/(24*time.Hour))
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	var m Minted
	err := tx.QueryRow(ctx, `
		SELECT u.id FROM cloud.users u JOIN cloud.org_members m ON m.user_id = u.id
		WHERE lower(u.email) = lower($1) AND m.org_id = $2`, o.UserEmail, o.OrgID).Scan(&m.UserID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Minted{}, fmt.Errorf("%s: %w %s", o.UserEmail, ErrNotMember, o.OrgID)
	}
	if err != nil {
		return Minted{}, fmt.Errorf("find member: %w", err)
	}
	if o.ExpiresIn > 0 {
		t := now().Add(o.ExpiresIn)
		m.ExpiresAt = &t
	}
	m.Token = Generate()
	err = tx.QueryRow(ctx, `
		INSERT INTO cloud.pats (user_id, name, token_hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		m.UserID, o.Name, Hash(m.Token), now(), m.ExpiresAt).Scan(&m.ID)
	if err != nil {
		return Minted{}, fmt.Errorf("store token: %w", err)
	}
	metadata := map[string]any{"name": o.Name}
	if m.ExpiresAt != nil {
		metadata["expires_at"] = m.ExpiresAt.UTC().Format(time.RFC3339)
	}
	_, err = auditlog.Log(ctx, tx, auditlog.Event{
		OrgID: o.OrgID, Action: auditlog.PATCreated, TargetID: m.ID, Metadata: metadata,
		Actor: &auditlog.Actor{ID: m.UserID},
	})
	if err != nil {
		return Minted{}, err
	}
	return m, nil
}
