package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/store"
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
	b.wantSearches(t, org, token, ids, []string{"signin", "minted", "revoked", "cluster"}, map[string][]string{
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
	})
	b.wantSearchRefused(t, org, token, map[string]string{
		"/audit?q=colour:blue":                                `"colour:blue"`,
		"/audit?q=created:>=yesterday":                        `"created:>=yesterday"`,
		"/audit?q=target:planet":                              `"target:planet"`,
		"/audit?q=actor:a@example.com+actor:b@example.com":    `"actor:b@example.com"`,
		"/audit?actor=a@example.com&q=actor:b@example.com":    "give one",
		"/audit?q=-created:2026-01-01":                        "negated",
		"/audit/feed?q=created:>=2026-01-01":                  "commit order",
		"/audit?q=" + strings.Repeat("x+", maxSearchTokens+1): "terms",
	})
}

// wantSearches checks that each search keeps the events named (ids maps a
// name to its event, newest lists the names newest first) in the list, the
// CSV export and the summary's total.
func (b *testBundle) wantSearches(t *testing.T, org, token string, ids map[string]string, newest []string, searches map[string][]string) {
	t.Helper()
	for q, want := range searches {
		query := "range=30d&q=" + url.QueryEscape(q)
		var wantIDs []string
		for _, name := range newest {
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
}

// wantSearchRefused checks that each path (of the org's API) is a 400 that
// names q, and in its reason the text given.
func (b *testBundle) wantSearchRefused(t *testing.T, org, token string, refused map[string]string) {
	t.Helper()
	for path, bad := range refused {
		resp, body := b.get(t, "/api/orgs/"+org+path, token)
		p := wantProblem(t, resp, body, http.StatusBadRequest)
		if len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != "q" || !strings.Contains(p.InvalidParams[0].Reason, bad) {
			t.Errorf("%s: %s, want q named with %s", path, body, bad)
		}
	}
}

// hourly makes a team org with its owner's token, records an event of
// ann@example.com in it for each pair of a name and an action, the first an
// hour ago, each next an hour before, and returns the org, the token, the
// events' ids by name and the names, newest first.
func hourly(t *testing.T, namesAndActions ...string) (b *testBundle, org, token string, ids map[string]string, newest []string) {
	t.Helper()
	b = setup(t, Config{RateLimit: math.Inf(1)})
	org, token = b.owner(t, "team")
	ids, newest = map[string]string{}, []string{}
	for i := 0; i < len(namesAndActions); i += 2 {
		name := namesAndActions[i]
		ids[name] = fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: namesAndActions[i+1], ActorEmail: "ann@example.com",
			Metadata:   `{"name": "ci", "email": "joe@example.com", "role": "member"}`,
			OccurredAt: time.Now().Add(-time.Duration(i+1) * time.Hour)})
		newest = append(newest, name)
	}
	return b, org, token, ids, newest
}

// TestSearchIgnoresCase: q's globs, names, words and target types ignore
// case as the actor filter does, beyond ASCII too (the Kelvin sign K lowers to k in
// PostgreSQL's ICU lower() and in the search alike), and a glob in capitals
// asks the database for the same actions, so the same index, as in lower
// case.
func TestSearchIgnoresCase(t *testing.T) {
	t.Parallel()
	b, org, token, ids, newest := hourly(t, "rotated", "cluster.token_rotated", "minted", "pat.created", "signin", "auth.signin")
	b.wantSearches(t, org, token, ids, newest, map[string][]string{
		"action:PAT.*":              {"minted"},
		"-action:AUTH.*":            {"rotated", "minted"},
		"Pat.Created":               {"minted"},
		"action:*.TO\u212aEN_*":     {"rotated"},
		"TO\u212aEN":                {"rotated"},
		"actor:ANN@EXAMPLE.COM PAT": {"minted"},
		"target:PAT":                {"minted"},
		"-target:Cluster":           {"minted", "signin"},
	})

	var sqlLower []string
	texts := []string{"PAT.*", "*.TO\u212aEN_*", "ÉMILE@EXAMPLE.COM", "ΣΊΣΥΦΟΣ", "İSTANBUL"}
	if err := b.admin.QueryRow(context.Background(), `SELECT array_agg(lower(t COLLATE "und-x-icu") ORDER BY n) FROM unnest($1::text[]) WITH ORDINALITY AS x(t, n)`, texts).Scan(&sqlLower); err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if lower(text) != sqlLower[i] {
			t.Errorf("%q lowers to %q in the search, %q in the actor filter", text, lower(text), sqlLower[i])
		}
	}

	catalog, err := store.New(b.admin).Actions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for upper, lower := range map[string]string{"action:PAT.*": "action:pat.*", "-action:AUTH.*": "-action:auth.*", "action:*.TO\u212aEN_*": "action:*.token_*"} {
		su, err1 := parseSearch(upper)
		sl, err2 := parseSearch(lower)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if got, want := actionFilter(catalog, filterParams{search: su}), actionFilter(catalog, filterParams{search: sl}); !slices.Equal(got, want) {
			t.Errorf("%s asks for %v, %s for %v", upper, got, lower, want)
		}
	}
}

// TestSearchPhrases: a "phrase in quotes" is found as written, ignoring
// case, in the action's name or its catalog description; * in it is a star,
// a colon or a leading - are its own; a qualifier's value may be quoted. A
// quote left open, or one inside a word, is a 400 that names the term.
func TestSearchPhrases(t *testing.T) {
	t.Parallel()
	b, org, token, ids, newest := hourly(t, "revoked", "pat.revoked", "minted", "pat.created", "invited", "org_invitation.created")
	b.wantSearches(t, org, token, ids, newest, map[string][]string{
		`"token revoked"`:                     {"revoked"}, // pat.revoked's description: Token revoked
		`"TOKEN   MINTED"`:                    {"minted"},
		`"invite sent" "token minted"`:        {"minted", "invited"},
		`action:pat.* -"token revoked"`:       {"minted"},
		`"pat.created"`:                       {"minted"},
		`"created"`:                           {"minted", "invited"},
		`action:"pat.*"`:                      {},
		`"pat:created"`:                       {},
		`actor:"ANN@example.com" "invite"`:    {"invited"},
		`target:"pat" -action:"token minted"`: {"revoked"},
	})
	b.wantSearchRefused(t, org, token, map[string]string{
		"/audit?q=" + url.QueryEscape(`action:pat.* "token rev`):        `'"token rev': no closing quote`,
		"/audit?q=" + url.QueryEscape(`"token revoked" actor:"ann@`):    `'actor:"ann@': no closing quote`,
		"/audit?q=" + url.QueryEscape(`pat"token revoked"`):             `'pat"token revoked"': quotes go around a whole phrase`,
		"/audit?q=" + url.QueryEscape(`"token"revoked`):                 `quotes go around`,
		"/audit?q=" + url.QueryEscape(`""`):                             `nothing in the quotes`,
		"/audit?q=" + url.QueryEscape(`"`+strings.Repeat("a", 500)+`"`): "longer than 500",
		"/audit/feed?q=" + url.QueryEscape(`"token`):                    "no closing quote",
		"/audit/summary?q=" + url.QueryEscape(`"token`):                 "no closing quote",
	})
}

// TestSearchCreatedBetweenMicroseconds: a created: time between two of
// PostgreSQL's microseconds bounds the range as the instant it is: >T
// keeps the next microsecond, <=T leaves it out.
func TestSearchCreatedBetweenMicroseconds(t *testing.T) {
	t.Parallel()
	const at = "2026-11-01T00:00:00.0000005Z"
	before := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) // the microsecond before at
	after := before.Add(time.Microsecond)                  // the one after it
	for q, want := range map[string][2]time.Time{
		"created:>" + at:            {after, {}},
		"created:>=" + at:           {after, {}},
		"created:<" + at:            {{}, after},
		"created:<=" + at:           {{}, after},
		"created:" + at + ".." + at: {after, after},
	} {
		s, err := parseSearch(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !s.since.Equal(want[0]) || !s.until.Equal(want[1]) {
			t.Errorf("%s: [%v, %v), want [%v, %v)", q, s.since, s.until, want[0], want[1])
		}
	}
}

// TestSearchQualifierNamesIgnoreCase: a qualifier's name is read in any
// case (Action:, ACTOR:, -TARGET:, Created:), as its values are.
func TestSearchQualifierNamesIgnoreCase(t *testing.T) {
	t.Parallel()
	b, org, token, ids, newest := hourly(t, "rotated", "cluster.token_rotated", "minted", "pat.created", "signin", "auth.signin")
	b.wantSearches(t, org, token, ids, newest, map[string][]string{
		"Action:pat.created":                   {"minted"},
		"ACTION:PAT.*":                         {"minted"},
		"-Action:auth.*":                       {"rotated", "minted"},
		"ACTOR:ann@example.com Target:cluster": {"rotated"},
		"-TARGET:cluster -target:auth":         {"minted"},
		"Created:>=" + time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly) + ` Action:"token minted"`: {"minted"},
	})
	b.wantSearchRefused(t, org, token, map[string]string{
		"/audit?q=Colour:blue": `"Colour:blue": unknown qualifier`,
		"/audit?q=" + url.QueryEscape("ACTOR:a@example.com actor:b@example.com"): `"actor:b@example.com"`,
	})
}

// TestSearchRefusesOtherWildcards: * is the one wildcard; ?, [, ] and \
// (wildcards or escapes elsewhere) are refused outside quotes with an error
// that names the term and says so, on the list, the summary and the feed,
// rather than found as text no action name holds or read as a pattern. In
// a phrase they are text.
func TestSearchRefusesOtherWildcards(t *testing.T) {
	t.Parallel()
	b, org, token, ids, newest := hourly(t, "minted", "pat.created", "signin", "auth.signin")
	refused := map[string]string{}
	for _, term := range []string{"action:pat.?reated", "pat.?", "-action:auth.*?", "action:pat.[cr]*", `action:pat\.*`, "action:pat]"} {
		refused["/audit?q="+url.QueryEscape("actor:ann@example.com "+term)] = named(term) + ": only * is a wildcard"
	}
	refused["/audit/summary?q="+url.QueryEscape("pat.?")] = `"pat.?": only * is a wildcard`
	refused["/audit/feed?q="+url.QueryEscape("pat.?")] = `"pat.?": only * is a wildcard`
	b.wantSearchRefused(t, org, token, refused)
	b.wantSearches(t, org, token, ids, newest, map[string][]string{
		`"pat.?"`:        {},
		`action:"pat.?"`: {},
		`-"auth.[s]"`:    {"minted", "signin"},
	})
}

// TestSearchCreatedOutsideTheRange: a created: term that leaves no time of
// the since/until range asked for (as the Activity page asks), or of range=,
// is a 400 that
// names the term, not since, which the reader of the page never typed;
// created: terms that leave no time of each other say so whatever the
// range; since after until is still since's fault.
func TestSearchCreatedOutsideTheRange(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	week := "since=" + url.QueryEscape(time.Now().UTC().AddDate(0, 0, -7).Format(time.RFC3339))
	for path, want := range map[string][2]string{
		"/audit?" + week + "&q=" + url.QueryEscape("created:<2020-01-01"):                                         {"q", `"created:<2020-01-01": no time from since to until fits it`},
		"/audit/summary?" + week + "&q=" + url.QueryEscape("pat created:2020-01-01..2020-02-01"):                  {"q", `"created:2020-01-01..2020-02-01": no time from since to until fits it`},
		"/audit?q=" + url.QueryEscape("created:>=2026-11-05 created:<2026-11-01"):                                 {"q", `"created:>=2026-11-05" and "created:<2026-11-01": no time fits them`},
		"/audit?" + week + "&q=" + url.QueryEscape("created:>=2026-11-05 created:<2026-11-01"):                    {"q", `"created:>=2026-11-05" and "created:<2026-11-01": no time fits them`},
		"/audit?" + week + "&q=" + url.QueryEscape("created:>=2020-01-01 created:<2020-02-01"):                    {"q", `"created:>=2020-01-01" and "created:<2020-02-01": no time from since to until fits them`},
		"/audit?" + week + "&q=" + url.QueryEscape("created:2026-11-05..2026-11-01"):                              {"q", `"created:2026-11-05..2026-11-01": no time fits it`},
		"/audit?range=7d&q=" + url.QueryEscape("created:<2020-01-01"):                                             {"q", `"created:<2020-01-01": no time of range=7d fits it`},
		"/audit?range=7d&format=csv&q=" + url.QueryEscape("created:<2020-01-01"):                                  {"q", `"created:<2020-01-01": no time of range=7d fits it`},
		"/audit/summary?range=30d&q=" + url.QueryEscape("pat created:2020-01-01..2020-02-01"):                     {"q", `"created:2020-01-01..2020-02-01": no time of range=30d fits it`},
		"/audit?range=24h&q=" + url.QueryEscape("created:>=2020-01-01 created:<2020-02-01"):                       {"q", `"created:>=2020-01-01" and "created:<2020-02-01": no time of range=24h fits them`},
		"/audit?range=7d&q=" + url.QueryEscape("created:2026-11-05..2026-11-01"):                                  {"q", `"created:2026-11-05..2026-11-01": no time fits it`},
		"/audit?since=2026-11-05T00:00:00Z&until=2026-11-01T00:00:00Z":                                            {"since", "must be before until"},
		"/audit?since=2026-11-05T00:00:00Z&until=2026-11-01T00:00:00Z&q=" + url.QueryEscape("created:2026-11-03"): {"since", "must be before until"},
	} {
		resp, body := b.get(t, "/api/orgs/"+org+path, token)
		p := wantProblem(t, resp, body, http.StatusBadRequest)
		if len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != want[0] || !strings.Contains(p.InvalidParams[0].Reason, want[1]) {
			t.Errorf("%s: %s, want %s named with %s", path, body, want[0], want[1])
		}
	}
	// A created: term inside the range narrows it, as with since.
	for _, path := range []string{
		"/audit?range=7d&q=" + url.QueryEscape("created:>=2020-01-01"),
		"/audit?range=7d&q=" + url.QueryEscape("created:<"+time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)),
		"/audit/summary?range=24h&q=" + url.QueryEscape("created:>="+time.Now().UTC().AddDate(0, 0, -3).Format(time.DateOnly)),
	} {
		if resp, body := b.get(t, "/api/orgs/"+org+path, token); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", path, resp.StatusCode, body)
		}
	}
}

// TestSearchErrorsSayWhatIsMissing: a term that is only a - says that
// nothing follows it, not that nothing follows a colon it does not have.
func TestSearchErrorsSayWhatIsMissing(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]string{
		"pat -":          `"-": nothing after the -`,
		"action:":        `"action:": nothing after the colon`,
		"-actor:":        `"-actor:": nothing after the colon`,
		`-""`:            `'-""': nothing in the quotes`,
		"pat --action:x": `"--action:x": unknown qualifier`,
	} {
		if _, err := parseSearch(q); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %s", q, err, want)
		}
	}
}

// TestSearchCreatedTimesIgnoreCase: created: reads an RFC 3339 time with
// a lower-case t and z, which RFC 3339 allows, as the same time.
func TestSearchCreatedTimesIgnoreCase(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"created:>=2026-11-01t10:00:00z", "created:2026-11-01T10:00:00.5z..2026-11-02", "Created:<2026-11-01t10:00:00+01:00"} {
		got, err1 := parseSearch(q)
		want, err2 := parseSearch(strings.ToUpper(q))
		if err1 != nil || err2 != nil || !got.since.Equal(want.since) || !got.until.Equal(want.until) {
			t.Errorf("%s: [%v, %v) %v, want [%v, %v) %v", q, got.since, got.until, err1, want.since, want.until, err2)
		}
	}
}

// TestSearchLengthInCharacters: q's bound is 500 characters, as the docs
// and the OpenAPI document's maxLength say, not 500 bytes: a phrase in
// accented letters of 400 characters (800 bytes) is read, one of 501
// characters is refused.
func TestSearchLengthInCharacters(t *testing.T) {
	t.Parallel()
	if _, err := parseSearch(`"` + strings.Repeat("é", 398) + `"`); err != nil {
		t.Errorf("400 characters: %v", err)
	}
	if _, err := parseSearch(strings.Repeat("é", 501)); err == nil || !strings.Contains(err.Error(), "longer than 500 characters") {
		t.Errorf("501 characters: %v", err)
	}
}
