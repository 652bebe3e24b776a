package pat_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func TestGenerate(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		tok := pat.Generate()
		if !strings.HasPrefix(tok, pat.Prefix) || len(tok) != len(pat.Prefix)+43 {
			t.Fatalf("malformed token %q", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q generated twice", tok)
		}
		seen[tok] = true
	}
}

func TestMintStoresOnlyTheHashAndRecordsTheEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	userID, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})

	var m pat.Minted
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
		m, err = pat.Mint(ctx, tx, pat.MintOpts{OrgID: org, UserEmail: strings.ToUpper(email), Name: "ci", ExpiresIn: time.Hour})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	var name string
	var expires time.Time
	if err := pool.QueryRow(ctx, "SELECT token_hash, name, expires_at FROM cloud.pats WHERE id = $1", m.ID).Scan(&stored, &name, &expires); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, pat.Hash(m.Token)) || bytes.Contains(stored, []byte(m.Token)) {
		t.Fatal("stored value is not the token's hash")
	}
	if name != "ci" || m.UserID != userID || time.Until(expires) < 59*time.Minute {
		t.Fatalf("stored %q for %s expiring %v", name, m.UserID, expires)
	}
	var action, actor, target string
	err = pool.QueryRow(ctx, "SELECT action, actor_email, target_id FROM audit.events WHERE org_id = $1", org).Scan(&action, &actor, &target)
	if err != nil || action != "pat.created" || actor != email || target != m.ID {
		t.Fatalf("event: %s by %s on %s (%v)", action, actor, target, err)
	}
}

func TestMintRefusesNonMember(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{})
	_, email := fixture.User(t, pool, fixture.UserOpts{})
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := pat.Mint(ctx, tx, pat.MintOpts{OrgID: org, UserEmail: email, Name: "x"})
		return err
	})
	if !errors.Is(err, pat.ErrNotMember) {
		t.Fatalf("got %v", err)
	}
}
