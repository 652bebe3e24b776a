package api

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
)

// FuzzListEvents sends any query string to GET /api/orgs/{id}/audit on a
// real server and database: the answer is never a 5xx, and every refusal is
// a problem+json. `go test` runs the seeds; `go test -fuzz FuzzListEvents
// ./api` searches further.
func FuzzListEvents(f *testing.F) {
	for _, seed := range []string{
		"", "action=token", "action=cluster.created&target_type=cluster", "action=%00", "action=%FF",
		"actor=ann%40example.com", "actor=%27%3B+DROP+TABLE+x%3B--", "target_type=pat&range=7d", "range=24h", "range=30d",
		"since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00+05:30", "since=0000-01-01T00:00:00Z",
		"until=0000-01-01T00:00:00Z", "until=9999-12-31T23:59:59.999999999Z", "format=csv&until=9999-12-31T23:59:59.999999999Z", "format=csv&since=9999-12-31T23:59:59.9999999Z", "since=1969-12-31T23:59:59.9999999Z&format=csv",
		"limit=1", "limit=1000", "limit=-1", "limit=99999999999999999999", "limit=1e3", "format=csv",
		"format=csv&action=token&until=0001-01-01T00:00:00Z", "cursor=AAAA", "cursor=" + strings.Repeat("A", 76),
		"cursor=%2F%2F%2F", "limit=2&limit=3", "unknown=1", "%ZZ=1", "action=" + strings.Repeat("é", 60),
		"action=_&target_type=org_member", "action=%25", "actor=%5C", ";=;&&&==",
		`q="token`, `q=-"a+b"+action:"pat.*"`, `q=""`, `q=a"b"c`, `q=actor:"%C3%89MILE%40x"`, `q="%5B"`,
	} {
		f.Add(seed)
	}
	b := setup(f, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(f, "team")
	for i := range 5 {
		fixture.Event(f, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Duration(i) * time.Hour), ActorEmail: "ann@example.com"})
	}
	f.Fuzz(func(t *testing.T, query string) {
		// A client percent-encodes these; sent raw, net/http refuses the
		// request line before any handler runs.
		if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '#' }) {
			t.Skip("not a request target a client sends")
		}
		req, err := http.NewRequest(http.MethodGet, b.base+"/api/orgs/"+org+"/audit?"+query, nil)
		if err != nil {
			t.Skip("not a URL a client can send")
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Skip("not a request a client can send")
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%q: %d", query, resp.StatusCode)
		}
		if resp.StatusCode != http.StatusOK && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%q: %d without a problem body", query, resp.StatusCode)
		}
	})
}
