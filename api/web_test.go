package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/store"
)

// TestSummaryCountsPerDay: the summary names the org, its plan and how far
// back it keeps, and counts the matching events per UTC day, zeros
// included.
func TestSummaryCountsPerDay(t *testing.T) {
	t.Parallel()
	// The server's clock is the test's: the days it counts end on the day
	// the test expects, even if midnight passes before its requests.
	now := time.Now()
	b := setup(t, Config{Now: func() time.Time { return now }})
	org, token := b.owner(t, "enterprise")
	at := func(daysAgo int) time.Time { return now.AddDate(0, 0, -daysAgo).Add(-time.Minute) }
	for _, e := range []fixture.EventOpts{
		{Action: "auth.signin", ActorEmail: "ann@example.com", OccurredAt: at(0)},
		{Action: "auth.signin", ActorEmail: "bob@example.com", OccurredAt: at(0)},
		{Action: "cluster.created", ActorEmail: "ann@example.com", OccurredAt: at(2)},
		{Action: "auth.signout", ActorEmail: "ann@example.com", OccurredAt: at(5)},
		{Action: "auth.signin", ActorEmail: "ann@example.com", OccurredAt: at(40)}, // outside 7d
	} {
		e.OrgID = org
		fixture.Event(t, b.admin, e)
	}

	get := func(query string) summary { t.Helper(); return b.summary(t, org, token, query) }
	counts := func(s summary) map[string]int64 {
		m := map[string]int64{}
		for _, d := range s.Days {
			if d.Count > 0 {
				m[d.Day] = d.Count
			}
		}
		return m
	}
	day := func(daysAgo int) string { return at(daysAgo).UTC().Format(time.DateOnly) }

	s := get("range=7d")
	if s.Org.ID != org || !strings.HasPrefix(s.Org.Name, "org-") || s.Org.Plan != "enterprise" || s.Org.RetentionDays != 365 ||
		s.Org.KeptSince.Sub(now.AddDate(0, 0, -365)).Abs() > time.Minute {
		t.Errorf("org %+v", s.Org)
	}
	first, last := utcDay(now.Add(-7*24*time.Hour)).Format(time.DateOnly), utcDay(now).Format(time.DateOnly)
	if len(s.Days) != 8 || s.Days[0].Day != first || s.Days[7].Day != last {
		t.Errorf("days %v; want the 8 from %s to %s", s.Days, first, last)
	}
	want := map[string]int64{day(0): 2, day(2): 1, day(5): 1}
	if got := counts(s); !equalCounts(got, want) {
		t.Errorf("7d counts %v, want %v", got, want)
	}
	if got := counts(get("range=7d&actor=ann@example.com&target_type=auth")); !equalCounts(got, map[string]int64{day(0): 1, day(5): 1}) {
		t.Errorf("ann's auth events per day: %v", got)
	}
	if got := counts(get("range=30d&action=created")); !equalCounts(got, map[string]int64{day(2): 1}) {
		t.Errorf("free-text action per day: %v", got)
	}

	resp, body := b.get(t, "/api/orgs/"+org+"/audit/summary?limit=5&format=csv", token)
	p := wantProblem(t, resp, body, http.StatusBadRequest)
	if len(p.InvalidParams) != 2 {
		t.Errorf("want limit and format named: %s", body)
	}

	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "admin"})
	resp, body = b.get(t, "/api/orgs/"+org+"/audit/summary", b.token(t, member, tokenOpts{}))
	wantProblem(t, resp, body, http.StatusForbidden)
}

// summary gets org's summary with query, failing the test on anything but
// a 200.
func (b *testBundle) summary(t *testing.T, org, token, query string) summary {
	t.Helper()
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/summary?"+query, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
	}
	var s summary
	if err := decodeJSON(body, &s); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return s
}

// TestSummaryAtTheEndOfTime: a since that rounds up into the year 10000
// (a time's last nanosecond of 9999, or created: after it) is a summary of
// nothing, in JSON, where it was a 200 without a body (JSON cannot write
// that year).
func TestSummaryAtTheEndOfTime(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	for _, query := range []string{"since=9999-12-31T23:59:59.9999999Z",
		"q=" + url.QueryEscape("created:>9999-12-31T23:59:59.999999Z")} {
		if s := b.summary(t, org, token, query); s.Total != 0 || s.Since.Year() > 9999 {
			t.Errorf("%s: %+v", query, s)
		}
	}
}

// utcDay is the UTC midnight starting t's day.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// TestSummaryGroupsByZoneAndBucket: tz makes the buckets the zone's days
// (02:00 UTC is the evening before in New York), bucket=hour and week
// group by hour and by week from Monday, total adds every bucket up, and a
// zone or bucket the API cannot use, or too many buckets, is a 400.
func TestSummaryGroupsByZoneAndBucket(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	d := utcDay(time.Now()).AddDate(0, 0, -2)
	for _, h := range []int{2, 14} {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: d.Add(time.Duration(h) * time.Hour)})
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	rfc := func(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339)) }
	window := "since=" + rfc(d.AddDate(0, 0, -3)) + "&until=" + rfc(d.AddDate(0, 0, 1))
	nonZero := func(s summary) map[string]int64 {
		m := map[string]int64{}
		for _, e := range s.Days {
			if e.Count > 0 {
				m[e.Start.UTC().Format(time.RFC3339)] = e.Count
			}
		}
		return m
	}
	utc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	dayIn := func(t time.Time, loc *time.Location) time.Time {
		y, m, dd := t.In(loc).Date()
		return time.Date(y, m, dd, 0, 0, 0, 0, loc)
	}

	s := b.summary(t, org, token, window)
	if s.TimeZone != "UTC" || s.Bucket != "day" || s.Total != 2 || len(s.Days) != 4 ||
		!equalCounts(nonZero(s), map[string]int64{utc(d): 2}) {
		t.Errorf("UTC days: %+v", s)
	}
	s = b.summary(t, org, token, window+"&tz=America/New_York")
	nyD := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, ny) // d's date, in New York
	wantNY := map[string]int64{utc(nyD.AddDate(0, 0, -1)): 1, utc(nyD): 1}
	if s.TimeZone != "America/New_York" || s.Total != 2 || len(s.Days) != 5 || !equalCounts(nonZero(s), wantNY) ||
		!s.Days[0].Start.Equal(d.AddDate(0, 0, -3)) || s.Days[1].Start.In(ny).Hour() != 0 || s.Days[0].Day != dayIn(d.AddDate(0, 0, -3), ny).Format(time.DateOnly) {
		t.Errorf("New York days: %+v, want counts %v", s, wantNY)
	}
	s = b.summary(t, org, token, "since="+rfc(d)+"&until="+rfc(d.AddDate(0, 0, 1))+"&bucket=hour")
	if len(s.Days) != 24 || s.Days[2].Count != 1 || s.Days[14].Count != 1 || s.Total != 2 {
		t.Errorf("hours: %+v", s)
	}
	s = b.summary(t, org, token, "range=1y&bucket=week&tz=America/New_York")
	for _, e := range s.Days[1:] {
		if l := e.Start.In(ny); l.Weekday() != time.Monday || l.Hour() != 0 {
			t.Errorf("a week starts at %s", l)
		}
	}
	if s.Total != 2 || len(s.Days) < 53 || len(s.Days) > 54 {
		t.Errorf("weeks of a year: %d, total %d", len(s.Days), s.Total)
	}

	for query, param := range map[string]string{
		"tz=Mars/Olympus": "tz", "tz=Local": "tz", "tz=UTC&tz=UTC": "tz", "bucket=minute": "bucket",
		"range=1y&bucket=hour": "bucket", "range=2y": "range",
	} {
		resp, body := b.get(t, "/api/orgs/"+org+"/audit/summary?"+query, token)
		if p := wantProblem(t, resp, body, http.StatusBadRequest); len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != param {
			t.Errorf("%s: %s, want %s named", query, body, param)
		}
	}
	// Too many buckets: the reason says how many the range would need (a
	// year has 8760 hours), not where the count stopped.
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/summary?range=1y&bucket=hour", token)
	if p := wantProblem(t, resp, body, http.StatusBadRequest); len(p.InvalidParams) != 1 || !strings.Contains(p.InvalidParams[0].Reason, "more than 1000 hours") {
		t.Errorf("too many buckets: %s", body)
	}
}

// TestSummaryBucketsCoverTheRange: the buckets cover the range exactly,
// in UTC and in New York: the first starts where the range starts (not at
// the Monday, midnight or hour before it), each ends where the next starts,
// the last ends where the range ends, and only events in the range count.
// So does the Activity page's "Last year", a year of weeks from a day that
// is seldom a Monday.
func TestSummaryBucketsCoverTheRange(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	for _, zone := range []string{"UTC", "America/New_York"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		y, m, d := time.Now().In(loc).AddDate(0, 0, -60).Date()
		since := time.Date(y, m, d, 10, 30, 0, 0, loc)
		for since.Weekday() != time.Wednesday {
			since = since.AddDate(0, 0, 1)
		}
		until := since.AddDate(0, 0, 20).Add(5 * time.Hour)
		for _, at := range []time.Time{since.Add(-time.Hour), since.Add(time.Minute), until.Add(-time.Minute), until.Add(time.Hour)} {
			fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "auth.signin", ActorEmail: zone + "@example.com", OccurredAt: at})
		}
		for _, bucket := range []string{"hour", "day", "week"} {
			s := b.summary(t, org, token, "actor="+url.QueryEscape(zone+"@example.com")+"&since="+url.QueryEscape(since.Format(time.RFC3339))+
				"&until="+url.QueryEscape(until.Format(time.RFC3339))+"&bucket="+bucket+"&tz="+zone)
			wantCover(t, zone+" "+bucket, s, since, until, loc)
			if n := len(s.Days); s.Total != 2 || n == 0 || s.Days[0].Count != 1 || s.Days[n-1].Count != 1 {
				t.Errorf("%s %s: total %d, first and last buckets %+v", zone, bucket, s.Total, s.Days)
			}
		}
		y, m, d = time.Now().In(loc).AddDate(0, 0, -364).Date()
		lastYear := time.Date(y, m, d, 0, 0, 0, 0, loc) // the page's since
		s := b.summary(t, org, token, "since="+url.QueryEscape(lastYear.Format(time.RFC3339))+"&bucket=week&tz="+zone)
		wantCover(t, zone+" last year", s, lastYear, s.Until, loc)
	}
}

// TestSummaryBucketsAcrossClockChanges: the buckets cover the range
// exactly, one per hour or day of the zone's clock, where the clock goes
// back (an hour comes twice, a range may start in either, and Go reads the
// hour's start as the first west of Greenwich, New York's, the second east
// of it, Berlin's) and where it skips midnight (Santiago's day starts at
// 01:00), and each counts the events between its start and its end; a day
// of 25 hours is one bucket. Each zone's clock change is the latest of two
// of a hemisphere each, so one is always within the year.
func TestSummaryBucketsAcrossClockChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "enterprise")
	west := lastClockChange(t, false, "America/New_York", "America/Santiago")
	east := lastClockChange(t, false, "Europe/Berlin", "Australia/Sydney")
	skip := lastClockChange(t, true, "America/Santiago", "America/Havana")
	for i, c := range []struct {
		bucket       string
		change       time.Time
		since, until time.Duration // from the change
	}{
		{"hour", west, -30 * time.Minute, 150 * time.Minute}, // from the first of the hour's two halves past
		{"hour", west, 30 * time.Minute, 210 * time.Minute},  // from the second
		{"hour", east, -30 * time.Minute, 150 * time.Minute},
		{"hour", east, 30 * time.Minute, 210 * time.Minute},
		{"day", west, -50 * time.Hour, 46 * time.Hour}, // a day of 25 hours
		{"day", skip, -50 * time.Hour, 46 * time.Hour},
		{"week", skip, -10 * 24 * time.Hour, 10 * 24 * time.Hour},
	} {
		loc := c.change.Location()
		since, until := c.change.Add(c.since), c.change.Add(c.until)
		actor := fmt.Sprintf("clock%d@example.com", i)
		events := []time.Time{since.Add(time.Minute), c.change.Add(-time.Minute), c.change.Add(time.Minute), until.Add(-time.Minute)}
		for _, at := range events {
			fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: "auth.signin", ActorEmail: actor, OccurredAt: at})
		}
		what := loc.String() + " " + c.bucket + " from " + since.Format(time.RFC3339)
		s := b.summary(t, org, token, "actor="+url.QueryEscape(actor)+"&since="+url.QueryEscape(since.Format(time.RFC3339))+
			"&until="+url.QueryEscape(until.Format(time.RFC3339))+"&bucket="+c.bucket+"&tz="+loc.String())
		wantCover(t, what, s, since, until, loc)
		inRange := int64(0)
		for _, at := range events {
			if !at.Before(since) && at.Before(until) {
				inRange++
			}
		}
		if s.Total != inRange {
			t.Errorf("%s: total %d, want %d", what, s.Total, inRange)
		}
		for j, d := range s.Days {
			want := int64(0)
			for _, at := range events {
				if !at.Before(d.Start) && at.Before(d.End) {
					want++
				}
			}
			if d.Count != want {
				t.Errorf("%s: bucket %d %+v counts %d, want %d of %v", what, j, d, d.Count, want, events)
			}
		}
	}
}

// lastClockChange is the latest time, in the 300 days before now, that the
// clock of one of zones went forward (or back), in that zone.
func lastClockChange(t *testing.T, forward bool, zones ...string) time.Time {
	t.Helper()
	var last time.Time
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for at := time.Now().In(loc); at.After(time.Now().AddDate(0, 0, -300)); {
			start, _ := at.ZoneBounds()
			_, after := start.Zone()
			_, before := start.Add(-time.Second).Zone()
			if after != before && after > before == forward {
				if start.After(last) {
					last = start
				}
				break
			}
			at = start.Add(-time.Second)
		}
	}
	if last.IsZero() {
		t.Fatalf("%v: no clock change in 300 days", zones)
	}
	return last
}

// wantCover checks that the summary's buckets cover [since, until) exactly,
// each named by its first day in loc.
func wantCover(t *testing.T, what string, s summary, since, until time.Time, loc *time.Location) {
	t.Helper()
	if len(s.Days) == 0 || !s.Days[0].Start.Equal(since) || !s.Days[len(s.Days)-1].End.Equal(until) {
		t.Errorf("%s: buckets %+v do not cover [%s, %s)", what, s.Days, since, until)
		return
	}
	for i, d := range s.Days {
		if d.Day != d.Start.In(loc).Format(time.DateOnly) || !d.Start.Before(d.End) || i > 0 && !s.Days[i-1].End.Equal(d.Start) {
			t.Errorf("%s: bucket %d is %+v after %+v", what, i, d, s.Days[max(i-1, 0)])
		}
	}
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSession: a browser trades a token for an HttpOnly, SameSite=Strict
// cookie that then reads the log like the header does, and is accepted on
// GET only; sign-out deletes it.
func TestSession(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})

	post := func(client *http.Client, contentType, body string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Post(b.base+"/api/session", contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, data
	}

	resp, body := post(http.DefaultClient, "text/plain", `{"token":"`+token+`"}`)
	wantProblem(t, resp, body, http.StatusUnsupportedMediaType)
	resp, body = post(http.DefaultClient, "application/json", `{"token":"alpat_nope"}`)
	wantProblem(t, resp, body, http.StatusUnauthorized)
	resp, body = post(http.DefaultClient, "application/json", `not json`)
	wantProblem(t, resp, body, http.StatusBadRequest)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, _ = post(browser, "application/json", `{"token":"`+token+`"}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != sessionCookie || !cookies[0].HttpOnly ||
		cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].MaxAge != 0 || !cookies[0].Expires.IsZero() {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, for the browser session", cookies)
	}

	resp, err := browser.Get(b.base + "/api/orgs/" + org + "/audit")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Events []json.RawMessage `json:"events"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(page.Events) != 1 {
		t.Fatalf("reading with the cookie: %d, %d events, %v", resp.StatusCode, len(page.Events), err)
	}

	// Not on other methods: a form elsewhere cannot use it.
	req, _ := http.NewRequest(http.MethodPost, b.base+"/api/orgs/"+org+"/audit", nil)
	req.AddCookie(cookies[0])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST with the cookie: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	req, _ = http.NewRequest(http.MethodDelete, b.base+"/api/session", nil)
	resp, err = browser.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	resp, err = browser.Get(b.base + "/api/orgs/" + org + "/audit")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// TestActivityPageServed: the page and its files come from the binary, with
// headers that keep other sites' scripts and frames out.
func TestActivityPageServed(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for path, want := range map[string]string{
		"/orgs/00000000-0000-0000-0000-000000000001/activity": "text/html",
		"/static/activity.js":  "text/javascript",
		"/static/activity.css": "text/css",
		"/static/favicon.svg":  "image/svg+xml",
	} {
		resp, body := b.get(t, path, "")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	for _, path := range []string{"/static/activity.html", "/static/nope.js", "/static/..%2fapi.go"} {
		if resp, body := b.get(t, path, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestEveryActionHasASentence: the catalog served gives every action a
// sentence, and each of its placeholders names who acted, the target, or
// metadata the action requires (with {a|b}, the last one), so no sentence
// renders with a hole.
func TestEveryActionHasASentence(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	_, token := b.owner(t, "free")
	resp, body := b.get(t, "/api/audit/actions", token)
	var catalog struct {
		Actions []store.Action `json:"actions"`
	}
	if err := decodeJSON(body, &catalog); err != nil || resp.StatusCode != http.StatusOK || len(catalog.Actions) == 0 {
		t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
	}
	placeholder := regexp.MustCompile(`\{([a-z_|]+)\}`)
	for _, a := range catalog.Actions {
		if !strings.HasPrefix(a.Sentence, "{actor} ") {
			t.Errorf("%s: sentence %q does not start with who acted", a.Action, a.Sentence)
		}
		for _, m := range placeholder.FindAllStringSubmatch(a.Sentence, -1) {
			keys := strings.Split(m[1], "|")
			if last := keys[len(keys)-1]; last != "actor" && last != "target" && !slices.Contains(a.RequiredKeys, last) {
				t.Errorf("%s: {%s} may be missing (required keys %v)", a.Action, m[1], a.RequiredKeys)
			}
		}
	}
}
