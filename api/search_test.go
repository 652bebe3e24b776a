package api

import (
	"bytes"
	"encoding/csv"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
)

// TestSearchQualifiers: q's qualifiers (action globs, exclusions, actor,
// target, created) select the same events from the list, the CSV export and
// the summary; a term the API cannot read is a 400 that names it.
func TestSearchQualifiers(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	now := time.Now().UTC()
	day := func(n int) time.Time { return utcDay(now).AddDate(0, 0, -n).Add(12 * time.Hour) }
	ids := map[string]string{}
	for name, e := range map[string]fixture.EventOpts{
		"signin":  {Action: "auth.signin", ActorEmail: "ann@example.com", Metadata: `{"method": "sso"}`, OccurredAt: day(1)},
		"minted":  {Action: "pat.created", ActorEmail: "ann@example.com", Metadata: `{"name": "ci"}`, OccurredAt: day(2)},
		"revoked": {Action: "pat.revoked", ActorEmail: "bob@example.com", Metadata: `{"name": "ci"}`, OccurredAt: day(3)},
		"cluster": {Action: "cluster.created", ActorEmail: "ann@example.com", Metadata: `{"name": "prod"}`, OccurredAt: day(5)},
	} {
		e.OrgID = org
		ids[name] = fixture.Event(t, b.admin, e)
	}
	for q, want := range map[string][]string{
		"action:pat.*":                              {"minted", "revoked"},
		"action:pat.* -action:pat.revoked":          {"minted"},
		"-action:auth.*":                            {"minted", "revoked", "cluster"},
		"pat":                                       {"minted", "revoked"},
		"actor:ann@example.com target:cluster":      {"cluster"},
		"-target:pat actor:ann@example.com":         {"signin", "cluster"},
		"created:>=" + day(3).Format(time.DateOnly): {"signin", "minted", "revoked"},
		"created:<" + day(2).Format(time.DateOnly):  {"revoked", "cluster"},
		"created:" + day(2).Format(time.DateOnly):   {"minted"},
		"created:" + day(5).Format(time.DateOnly) + ".." + day(3).Format(time.DateOnly):    {"revoked", "cluster"},
		"action:pat.* created:>" + day(3).Format(time.DateOnly) + " actor:ann@example.com": {"minted"},
	} {
		query := "range=30d&q=" + url.QueryEscape(q)
		var wantIDs []string
		for _, name := range []string{"signin", "minted", "revoked", "cluster"} { // newest first
			if slices.Contains(want, name) {
				wantIDs = append(wantIDs, ids[name])
			}
		}
		if page, _ := b.page(t, org, token, query); !slices.Equal(page.ids(), wantIDs) {
			t.Errorf("%s: %v, want %v", q, page.ids(), want)
		}
		_, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv&"+query, token)
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil || len(rows) != len(wantIDs)+1 {
			t.Errorf("%s: CSV %v %v", q, rows, err)
		}
		if s := b.summary(t, org, token, query); s.Total != int64(len(wantIDs)) {
			t.Errorf("%s: summary total %d, want %d", q, s.Total, len(wantIDs))
		}
	}

	for path, bad := range map[string]string{
		"/audit?q=colour:blue":                                `"colour:blue"`,
		"/audit?q=created:>=yesterday":                        `"created:>=yesterday"`,
		"/audit?q=target:planet":                              `"target:planet"`,
		"/audit?q=actor:a@example.com+actor:b@example.com":    `"actor:b@example.com"`,
		"/audit?actor=a@example.com&q=actor:b@example.com":    "give one",
		"/audit?q=-created:2026-01-01":                        "negated",
		"/audit/feed?q=created:>=2026-01-01":                  "commit order",
		"/audit?q=" + strings.Repeat("x+", maxSearchTokens+1): "terms",
	} {
		resp, body := b.get(t, "/api/orgs/"+org+path, token)
		p := wantProblem(t, resp, body, http.StatusBadRequest)
		if len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != "q" || !strings.Contains(p.InvalidParams[0].Reason, bad) {
			t.Errorf("%s: %s, want q named with %s", path, body, bad)
		}
	}
}
