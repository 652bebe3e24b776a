package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog/internal/database"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/pat"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	testdb.Main(m)
}

// testBundle is a migrated database and the API serving it over real HTTP,
// connected as a login role holding only audit_reader, as in production.
type testBundle struct {
	url   string        // superuser URL of the test database
	admin *pgxpool.Pool // superuser pool, to make rows
	base  string        // the API's base URL
}

func setup(t testing.TB, cfg Config) *testBundle {
	t.Helper()
	return setupListening(t, cfg, nil)
}

// setupListening is setup with the server's listener wrapped by wrap, if
// not nil.
func setupListening(t testing.TB, cfg Config, wrap func(net.Listener) net.Listener) *testBundle {
	t.Helper()
	url := testdb.New(t)
	b := &testBundle{url: url, admin: testdb.Pool(t, url)}
	// The pool as serve makes it: its runtime parameters are part of what
	// the tests check.
	pool, err := database.Pool(context.Background(), testdb.Role(t, url, "audit_reader"), ConfigurePool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg.Pool = pool
	srv := httptest.NewUnstartedServer(New(cfg))
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	b.base = srv.URL
	return b
}

// tokenOpts describe a token made by token.
type tokenOpts struct {
	expiresAt *time.Time
	revoked   bool
}

// token stores a personal access token for userID, as the control plane
// does (only its hash), without recording an event, and returns it.
func (b *testBundle) token(t testing.TB, userID string, o tokenOpts) string {
	t.Helper()
	tok := pat.Generate()
	var revokedAt *time.Time
	if o.revoked {
		now := time.Now()
		revokedAt = &now
	}
	_, err := b.admin.Exec(context.Background(),
		"INSERT INTO cloud.pats (user_id, name, token_hash, expires_at, revoked_at) VALUES ($1, 'test', $2, $3, $4)",
		userID, pat.Hash(tok), o.expiresAt, revokedAt)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok
}

// owner makes an org with the plan and an owner, and returns the org and
// the owner's token.
func (b *testBundle) owner(t testing.TB, plan string) (org, token string) {
	t.Helper()
	org = fixture.Org(t, b.admin, fixture.OrgOpts{Plan: plan})
	user, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "owner"})
	return org, b.token(t, user, tokenOpts{})
}

// get requests path with the token (none if empty) and returns the
// response with its body read.
func (b *testBundle) get(t testing.TB, path, token string) (*http.Response, []byte) {
	t.Helper()
	return b.call(t, http.MethodGet, path, token, "")
}

// eventsPage is a page as a client decodes it.
type eventsPage struct {
	Events []struct {
		ID         string          `json:"id"`
		OrgID      string          `json:"org_id"`
		OccurredAt time.Time       `json:"occurred_at"`
		Action     string          `json:"action"`
		TargetType string          `json:"target_type"`
		TargetID   *string         `json:"target_id"`
		ActorType  string          `json:"actor_type"`
		ActorID    *string         `json:"actor_id"`
		ActorEmail *string         `json:"actor_email"`
		IP         *string         `json:"ip"`
		UserAgent  *string         `json:"user_agent"`
		RequestID  *string         `json:"request_id"`
		Metadata   json.RawMessage `json:"metadata"`
	} `json:"events"`
	NextCursor *string `json:"next_cursor"`

	resp *http.Response
}

// linkNext is the target of the page's Link rel="next" header.
func (p eventsPage) linkNext(t testing.TB) string {
	t.Helper()
	link := p.resp.Header.Get("Link")
	target, rel, ok := strings.Cut(link, ">; ")
	if !ok || rel != `rel="next"` || !strings.HasPrefix(target, "<") {
		t.Fatalf("Link %q is not <url>; rel=\"next\"", link)
	}
	return target[1:]
}

func decodePage(t testing.TB, body []byte) eventsPage {
	t.Helper()
	var p eventsPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return p
}

// page gets a page of org's events and fails the test unless it is a 200.
func (b *testBundle) page(t testing.TB, org, token, query string) (eventsPage, *http.Response) {
	t.Helper()
	resp, body := b.get(t, "/api/orgs/"+org+"/audit?"+query, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
	}
	p := decodePage(t, body)
	p.resp = resp
	return p, resp
}

// ids lists a page's event ids in order.
func (p eventsPage) ids() []string {
	ids := make([]string, len(p.Events))
	for i, e := range p.Events {
		ids[i] = e.ID
	}
	return ids
}

// problemBody is an application/problem+json body.
type problemBody struct {
	Type          string `json:"type"`
	Title         string `json:"title"`
	Status        int    `json:"status"`
	Detail        string `json:"detail"`
	InvalidParams []struct {
		Name   string `json:"name"`
		Reason string `json:"reason"`
	} `json:"invalid_params"`
}

// wantProblem checks resp is a problem+json with the status, and returns it.
func wantProblem(t testing.TB, resp *http.Response, body []byte, status int) problemBody {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if p.Status != status || p.Title == "" || p.Type == "" || p.Detail == "" {
		t.Fatalf("incomplete problem: %s", body)
	}
	return p
}

// decodeJSON decodes body strictly: an unknown field is an error.
func decodeJSON(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
