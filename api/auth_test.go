package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
)

// TestAuth checks every way a request can be refused, and that an owner
// gets through: 401 for a missing, malformed, unknown, expired or revoked
// token; 403 for a member who is not an owner; 404 for a non-member, an org
// that does not exist and a malformed org id.
func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, ownerToken := b.owner(t, "team")
	other := fixture.Org(t, b.admin, fixture.OrgOpts{})
	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "member"})
	admin, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "admin"})
	owner2, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "owner"})
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(time.Hour)

	events := "/api/orgs/" + org + "/audit"
	cases := []struct {
		name, path, header string
		status             int
	}{
		{"no header", events, "", 401},
		{"not bearer", events, "Basic dXNlcjpwYXNz", 401},
		{"empty bearer", events, "Bearer ", 401},
		{"unknown token", events, "Bearer alpat_unknown", 401},
		{"expired token", events, "Bearer " + b.token(t, owner2, tokenOpts{expiresAt: &past}), 401},
		{"revoked token", events, "Bearer " + b.token(t, owner2, tokenOpts{revoked: true}), 401},
		{"catalog without token", "/api/audit/actions", "", 401},
		{"member", events, "Bearer " + b.token(t, member, tokenOpts{}), 403},
		{"admin", events, "Bearer " + b.token(t, admin, tokenOpts{}), 403},
		{"owner of another org", "/api/orgs/" + other + "/audit", "Bearer " + ownerToken, 404},
		{"no such org", "/api/orgs/00000000-0000-4000-8000-000000000000/audit", "Bearer " + ownerToken, 404},
		{"malformed org id", "/api/orgs/not-a-uuid/audit", "Bearer " + ownerToken, 404},
		{"owner", events, "Bearer " + ownerToken, 200},
		{"owner, scheme in lower case", events, "bearer " + ownerToken, 200},
		{"owner with an expiring token", events, "Bearer " + b.token(t, owner2, tokenOpts{expiresAt: &future}), 200},
		{"catalog, any valid token", "/api/audit/actions", "Bearer " + b.token(t, member, tokenOpts{}), 200},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, b.base+c.path, nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if c.status == 200 {
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d, want 200: %s", c.name, resp.StatusCode, body)
			}
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			p := wantProblem(t, resp, body, c.status)
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if c.status == 404 && strings.Contains(p.Detail, other) {
				t.Error("404 names the org")
			}
		})
	}
}

// TestNotFoundAndMethod: unknown paths and non-GET methods are problems too.
func TestNotFoundAndMethod(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	resp, body := b.get(t, "/api/nope", "")
	wantProblem(t, resp, body, http.StatusNotFound)

	req, _ := http.NewRequest(http.MethodDelete, b.base+"/api/audit/actions", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ = io.ReadAll(r.Body)
	wantProblem(t, r, body, http.StatusMethodNotAllowed)
}
