package devenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog/internal/devenv"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// Role names are cluster-wide: two databases of one cluster make the login
// roles at the same moment, and again later, without an error.
func TestCreateLoginRolesTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	urls := []string{testdb.New(t), testdb.New(t)}
	var wg sync.WaitGroup
	errs := make([]error, len(urls)*2)
	for i := range errs {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, urls[i%len(urls)])
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(ctx)
			errs[i] = devenv.CreateLoginRoles(ctx, conn)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	pool := testdb.Pool(t, urls[0])
	for _, r := range devenv.LoginRoles {
		var inherits, replication bool
		if err := pool.QueryRow(ctx, "SELECT rolinherit, rolreplication FROM pg_roles WHERE rolname = $1 AND rolcanlogin AND NOT rolsuper",
			r.Name).Scan(&inherits, &replication); err != nil {
			t.Errorf("login role %s: %v", r.Name, err)
			continue
		}
		if inherits == r.NoInherit {
			t.Errorf("login role %s: inherit %v, want %v", r.Name, inherits, !r.NoInherit)
		}
		if replication != r.Replication {
			t.Errorf("login role %s: replication %v, want %v", r.Name, replication, r.Replication)
		}
		for _, g := range r.Groups {
			var ok bool
			if err := pool.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", r.Name, g).Scan(&ok); err != nil || !ok {
				t.Errorf("login role %s in %s: %v %v", r.Name, g, ok, err)
			}
		}
	}
}

// A token that stopped working, revoked or expired, is replaced by a new one.
func TestOwnerTokenReplacesARevokedOrExpiredOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)
	org := fixture.Org(t, pool, fixture.OrgOpts{Plan: "enterprise"})
	_, email := fixture.User(t, pool, fixture.UserOpts{OrgID: org, Role: "owner"})
	opts := devenv.TokenOpts{Dir: t.TempDir(), OrgID: org, Email: email}
	first, _, err := devenv.OwnerToken(ctx, pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE cloud.pats SET revoked_at = now() WHERE token_hash = $1", pat.Hash(first)); err != nil {
		t.Fatal(err)
	}
	second, minted, err := devenv.OwnerToken(ctx, pool, opts)
	if err != nil || !minted || second == first {
		t.Fatalf("after revoking: minted %v, same token %v (%v)", minted, second == first, err)
	}
	kept, _ := os.ReadFile(filepath.Join(opts.Dir, devenv.TokenFile))
	if strings.TrimSpace(string(kept)) != second {
		t.Fatal("the new token was not kept")
	}
	if again, minted, err := devenv.OwnerToken(ctx, pool, opts); err != nil || minted || again != second {
		t.Fatalf("a working token was replaced: minted %v (%v)", minted, err)
	}

	opts.Now = func() time.Time { return time.Now().Add(devenv.TokenLifetime + time.Hour) }
	third, minted, err := devenv.OwnerToken(ctx, pool, opts)
	if err != nil || !minted || third == second {
		t.Fatalf("after expiry: minted %v, same token %v (%v)", minted, third == second, err)
	}
}
