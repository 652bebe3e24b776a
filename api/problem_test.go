package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditlog/auditlog/internal/store"
)

// TestProblemFor pins the one mapping from errors to HTTP answers: the
// store's errors, SQLSTATE classes, timeouts and a client that left.
func TestProblemFor(t *testing.T) {
	t.Parallel()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	pg := func(code string) error { return fmt.Errorf("list events: %w", &pgconn.PgError{Code: code}) }
	cases := []struct {
		name     string
		ctx      context.Context
		err      error
		status   int // 0: no answer
		internal bool
	}{
		{"own problem", context.Background(), invalidParamProblem("limit", "x"), http.StatusBadRequest, false},
		{"bad token", context.Background(), fmt.Errorf("authenticate: %w", store.ErrUnauthenticated), http.StatusUnauthorized, false},
		{"no org", context.Background(), store.ErrNoSuchOrg, http.StatusNotFound, false},
		{"client left", gone, fmt.Errorf("export: %w", context.Canceled), 0, false},
		{"query timeout", context.Background(), fmt.Errorf("page: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, false},
		{"statement timeout", context.Background(), pg("57014"), http.StatusServiceUnavailable, false},
		{"connection lost", context.Background(), pg("08006"), http.StatusServiceUnavailable, true},
		{"too many connections", context.Background(), pg("53300"), http.StatusServiceUnavailable, true},
		{"server shutting down", context.Background(), pg("57P01"), http.StatusServiceUnavailable, true},
		{"privilege missing", context.Background(), pg("42501"), http.StatusInternalServerError, true},
		{"anything else", context.Background(), errors.New("boom"), http.StatusInternalServerError, true},
	}
	for _, c := range cases {
		p, internal := problemFor(c.ctx, c.err)
		status := 0
		if p != nil {
			status = p.Status
		}
		if status != c.status || internal != c.internal {
			t.Errorf("%s: %d internal=%v, want %d internal=%v", c.name, status, internal, c.status, c.internal)
		}
		if status == http.StatusServiceUnavailable && p.retryAfter == 0 {
			t.Errorf("%s: 503 without Retry-After", c.name)
		}
	}
}

// TestEveryResponseIsNoSniff checks X-Content-Type-Options: nosniff on JSON
// answers, problems of every origin (the handler, the router, auth), the CSV
// export and the page.
func TestEveryResponseIsNoSniff(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	paths := []struct{ path, token string }{
		{"/healthz", ""},
		{"/api/openapi.json", ""},
		{"/api/audit/actions", token},
		{"/api/orgs/" + org + "/audit", token},
		{"/api/orgs/" + org + "/audit/summary", token},
		{"/api/orgs/" + org + "/audit?format=csv", token},
		{"/api/orgs/" + org + "/audit?limit=0", token},      // 400
		{"/api/orgs/" + org + "/audit", ""},                 // 401
		{"/api/orgs/" + uuid.NewString() + "/audit", token}, // 404
		{"/api/nowhere", token},                             // 404 of the router
		{"/orgs/" + org + "/activity", ""},
	}
	for _, p := range paths {
		resp, _ := b.get(t, p.path, p.token)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: %d, X-Content-Type-Options %q", p.path, resp.StatusCode, got)
		}
	}
	resp, err := http.Post(b.base+"/api/audit/actions", "application/json", nil) // 405
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Content-Type-Options"); resp.StatusCode != http.StatusMethodNotAllowed || got != "nosniff" {
		t.Errorf("POST: %d, X-Content-Type-Options %q", resp.StatusCode, got)
	}
}
