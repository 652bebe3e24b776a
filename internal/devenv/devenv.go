// Package devenv prepares what `auditlog dev` needs in the local cluster
// beyond the schema and the demo: a login role for each part of the product,
// and an owner token that keeps working from one run to the next.
package devenv

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/pat"
)

// LoginRole is a login role of the local cluster for one part of the
// product, a member of the group roles that part needs.
type LoginRole struct {
	Name   string
	Groups []string
	// NoInherit keeps the groups' rights out of the session until it sets
	// a role: the retention worker takes audit_owner only to detach.
	NoInherit bool
	// Replication gives the role the REPLICATION attribute, which logical
	// decoding needs: the sealer's.
	Replication bool
	About       string
}

// LoginRoles are the roles CreateLoginRoles makes; the first is the API's.
var LoginRoles = []LoginRole{
	{Name: "auditlog_api", Groups: []string{"audit_reader"}, About: "the read-only API"},
	{Name: "auditlog_app", Groups: []string{"audit_writer"}, About: "the control plane, recording events"},
	{Name: "auditlog_worker", Groups: []string{"audit_maintainer", "audit_owner"}, NoInherit: true,
		About: "the retention worker (audit_owner only for DETACH ... CONCURRENTLY, see docs/retention.md)"},
	{Name: "auditlog_import", Groups: []string{"audit_maintainer"}, About: "bulk imports"},
	{Name: Sealer, Groups: []string{"audit_sealer"}, Replication: true, About: "the sealer (REPLICATION for logical decoding, see docs/feed.md)"},
	{Name: Deliverer, Groups: []string{"audit_deliverer"}, About: "the delivery worker (see docs/delivery.md)"},
}

// Worker is the login role the retention worker runs as.
const Worker = "auditlog_worker"

// Sealer is the login role the sealer runs as.
const Sealer = "auditlog_sealer"

// Deliverer is the login role the delivery worker runs as.
const Deliverer = "auditlog_deliverer"

// SealKeyFile is the name of the file, in the local cluster's directory,
// that keeps the sealer's signing key between runs.
const SealKeyFile = "dev-seal-key.pem"

//go:embed login_role.sql
var loginRoleSQL string

//go:embed token_valid.sql
var tokenValidSQL string

// CreateLoginRoles makes each of LoginRoles unless it exists and grants it
// its group roles. Idempotent, and safe beside another database of the same
// cluster doing the same.
func CreateLoginRoles(ctx context.Context, conn *pgx.Conn) error {
	for _, r := range LoginRoles {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('devenv.role', $1, true), set_config('devenv.groups', $2, true),
				set_config('devenv.noinherit', $3, true), set_config('devenv.about', $4, true),
				set_config('devenv.replication', $5, true)`,
				r.Name, strings.Join(r.Groups, ","), fmt.Sprint(r.NoInherit), r.About, fmt.Sprint(r.Replication)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, loginRoleSQL)
			return err
		})
		if err != nil {
			return fmt.Errorf("create login role %s: %w", r.Name, err)
		}
	}
	return nil
}

// DB runs queries and opens transactions: *pgx.Conn and *pgxpool.Pool do.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TokenFile is the name of the file, in the local cluster's directory, that
// keeps the owner token between runs.
const TokenFile = "dev-owner-token"

// TokenLifetime is how long a token minted by OwnerToken works; a new one is
// minted when it has run out.
const TokenLifetime = 30 * 24 * time.Hour

// TokenOpts say whose token OwnerToken keeps, and where.
type TokenOpts struct {
	// Dir holds the token file: the local cluster's directory, so the token
	// lives and dies with the database it works for.
	Dir string
	// OrgID and Email are the org and the owner the token acts as.
	OrgID, Email string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// OwnerToken returns the token kept in Dir if it still works for an owner of
// the org, else mints one with pat.Mint (which stores only its hash and
// records pat.created) and keeps it, readable by its user only. minted says
// which.
func OwnerToken(ctx context.Context, db DB, o TokenOpts) (token string, minted bool, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	path := filepath.Join(o.Dir, TokenFile)
	kept, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("read owner token: %w", err)
	}
	if kept = bytes.TrimSpace(kept); len(kept) > 0 {
		var valid bool
		if err := db.QueryRow(ctx, tokenValidSQL, pat.Hash(string(kept)), o.OrgID, o.Now()).Scan(&valid); err != nil {
			return "", false, fmt.Errorf("check owner token: %w", err)
		}
		if valid {
			return string(kept), false, nil
		}
	}
	var m pat.Minted
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) (err error) {
		m, err = pat.Mint(ctx, tx, pat.MintOpts{OrgID: o.OrgID, UserEmail: o.Email, Name: "make-run", ExpiresIn: TokenLifetime, Now: o.Now})
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("mint owner token: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(m.Token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("keep owner token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("keep owner token: %w", err)
	}
	return m.Token, true, nil
}
