package api

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestLockedLookupsAnswer503Fast holds an ACCESS EXCLUSIVE lock on the table
// behind authentication (cloud.pats), then on the one behind the org's scope
// (cloud.orgs), for 8 s each: a request must answer 503 with Retry-After
// within a few seconds, not wait for the lock, and the pool must still serve
// /healthz meanwhile.
func TestLockedLookupsAnswer503Fast(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	const held = 8 * time.Second
	for _, table := range []string{"cloud.pats", "cloud.orgs"} {
		t.Run(table, func(t *testing.T) {
			ctx := context.Background()
			tx, err := b.admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "LOCK "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			released := make(chan struct{})
			release := time.AfterFunc(held, func() { tx.Rollback(ctx); close(released) })
			defer func() { // one goroutine at a time on tx
				if !release.Stop() {
					<-released
				}
			}()

			start := time.Now()
			resp, body := b.get(t, "/api/orgs/"+org+"/audit", token)
			took := time.Since(start)
			wantProblem(t, resp, body, http.StatusServiceUnavailable)
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if took > held/2 {
				t.Errorf("answered after %v, with the lock held %v", took, held)
			}
			if resp, body := b.get(t, "/healthz", ""); resp.StatusCode != http.StatusOK {
				t.Errorf("healthz while the lock is held: %d %s", resp.StatusCode, body)
			}
		})
	}
}
