package api

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/store"
)

// knownEvent is an event a test placed, to compute what a filter must return.
type knownEvent struct {
	id     string
	at     time.Time
	action string
	actor  string
}

// TestFilters runs each filter and combinations against known events and
// compares the ids returned, in order, with the ones expected.
func TestFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "enterprise")
	now := time.Now().UTC().Truncate(time.Microsecond)
	ann, bob := "ann@example.com", "bob@example.com"
	var events []knownEvent
	add := func(ago time.Duration, action, actor string) {
		metadata := map[auditlog.Action]string{
			"cluster.created": `{"name": "prod"}`, "pat.created": `{"name": "ci"}`, "pat.revoked": `{"name": "ci"}`,
			"org_invitation.created": `{"email": "x@example.com", "role": "member"}`,
		}[auditlog.Action(action)]
		e := knownEvent{at: now.Add(-ago), action: action, actor: actor}
		e.id = fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: e.at, Action: action, ActorEmail: actor, Metadata: metadata})
		events = append(events, e)
	}
	add(time.Hour, "cluster.created", ann)
	add(2*time.Hour, "cluster.token_rotated", bob)
	add(3*time.Hour, "pat.created", ann)
	add(30*time.Hour, "pat.revoked", bob)
	add(3*24*time.Hour, "cluster.token_rotated", ann)
	add(10*24*time.Hour, "org_invitation.created", bob)
	add(20*24*time.Hour, "auth.signin", "")
	add(60*24*time.Hour, "cluster.created", bob)
	add(400*24*time.Hour, "cluster.created", ann) // past enterprise retention
	// An event of another org never shows.
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: fixture.Org(t, b.admin, fixture.OrgOpts{Plan: "enterprise"}), OccurredAt: now})

	since := now.Add(-15 * 24 * time.Hour)
	until := now.Add(-2 * time.Hour)
	within := func(keep func(e knownEvent) bool) []string {
		var ids []string
		for _, e := range events { // placed newest first
			if now.Sub(e.at) < 365*24*time.Hour && keep(e) {
				ids = append(ids, e.id)
			}
		}
		return ids
	}
	isAction := func(actions ...string) func(knownEvent) bool {
		return func(e knownEvent) bool { return slices.Contains(actions, e.action) }
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"", within(func(knownEvent) bool { return true })},
		{"action=cluster.created", within(isAction("cluster.created"))},
		{"action=TOKEN", within(isAction("cluster.token_rotated"))},
		{"action=created", within(isAction("cluster.created", "pat.created", "org_invitation.created"))},
		{"action=nothing-like-this", nil},
		{"target_type=pat", within(isAction("pat.created", "pat.revoked"))},
		{"target_type=cluster", within(isAction("cluster.created", "cluster.token_rotated"))},
		{"target_type=auth", within(isAction("auth.signin"))},
		{"actor=" + url.QueryEscape(ann), within(func(e knownEvent) bool { return e.actor == ann })},
		{"range=24h", within(func(e knownEvent) bool { return now.Sub(e.at) < 24*time.Hour })},
		{"range=7d", within(func(e knownEvent) bool { return now.Sub(e.at) < 7*24*time.Hour })},
		{"range=30d", within(func(e knownEvent) bool { return now.Sub(e.at) < 30*24*time.Hour })},
		{"since=" + since.Format(time.RFC3339Nano), within(func(e knownEvent) bool { return !e.at.Before(since) })},
		{"until=" + until.Format(time.RFC3339Nano), within(func(e knownEvent) bool { return e.at.Before(until) })},
		{"since=" + since.Format(time.RFC3339Nano) + "&until=" + until.Format(time.RFC3339Nano),
			within(func(e knownEvent) bool { return !e.at.Before(since) && e.at.Before(until) })},
		{"since=2000-01-01T00:00:00Z", within(func(knownEvent) bool { return true })}, // clipped to retention
		{"action=created&target_type=pat", within(isAction("pat.created"))},
		{"action=cluster.created&target_type=pat", nil},
		{"target_type=cluster&actor=" + url.QueryEscape(ann) + "&range=7d",
			within(func(e knownEvent) bool {
				return isAction("cluster.created", "cluster.token_rotated")(e) && e.actor == ann && now.Sub(e.at) < 7*24*time.Hour
			})},
		{"action=token&actor=" + url.QueryEscape(bob), within(func(e knownEvent) bool { return e.action == "cluster.token_rotated" && e.actor == bob })},
	}
	for _, c := range cases {
		p, _ := b.page(t, org, token, c.query)
		if got := p.ids(); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %d events %v, want %d %v", c.query, len(got), got, len(c.want), c.want)
		}
		// The same, two at a time: the keyset follows each filter's index.
		var walked []string
		query := c.query + "&limit=2"
		for range 10 {
			p, _ := b.page(t, org, token, query)
			walked = append(walked, p.ids()...)
			if p.NextCursor == nil {
				break
			}
			query = c.query + "&limit=2&cursor=" + *p.NextCursor
		}
		if !slices.Equal(walked, c.want) {
			t.Errorf("%q in pages of 2: got %v, want %v", c.query, walked, c.want)
		}
	}
}

// TestRetentionFloor: an org sees nothing older than its plan keeps, even
// where the tier table still holds it, and during a pending re-tier it sees
// its events in both tier tables, merged newest first.
func TestRetentionFloor(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	org, token := b.owner(t, "free")
	now := time.Now()
	old := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-8 * 24 * time.Hour)})
	freeRecent := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-2 * time.Hour)})
	p, _ := b.page(t, org, token, "range=30d")
	if !slices.Equal(p.ids(), []string{freeRecent}) {
		t.Fatalf("free plan, range=30d: %v, want only %s (not %s, 8 days old)", p.ids(), freeRecent, old)
	}

	// Upgrade: new events go to the team table; until the worker re-tiers,
	// the free table still holds the older ones.
	if _, err := b.admin.Exec(ctx, "UPDATE cloud.orgs SET plan = 'team' WHERE id = $1", org); err != nil {
		t.Fatal(err)
	}
	teamNewest := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-time.Hour)})
	freeNewer := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Tier: "free", OccurredAt: now.Add(-90 * time.Minute)})
	teamOlder := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: now.Add(-3 * time.Hour)})
	p, _ = b.page(t, org, token, "")
	want := []string{teamNewest, freeNewer, freeRecent, teamOlder}
	if !slices.Equal(p.ids(), want) {
		t.Fatalf("pending re-tier: %v, want %v (the 8-day-old event expired under the free plan)", p.ids(), want)
	}
	p, _ = b.page(t, org, token, "limit=2")
	p2, _ := b.page(t, org, token, "limit=2&cursor="+*p.NextCursor)
	if got := append(p.ids(), p2.ids()...); !slices.Equal(got, want) {
		t.Fatalf("pages across tiers: %v, want %v", got, want)
	}
}

// TestPaginationWalkWhileInserting walks a large set of events, many
// sharing a timestamp, a page at a time while new events are recorded: every
// event that existed when the walk began comes back exactly once, in order,
// and the Link header always carries the next cursor.
func TestPaginationWalkWhileInserting(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	ctx := context.Background()
	org, token := b.owner(t, "team")
	// 3000 events over two days, ten per timestamp. Tomorrow's leaf too:
	// the insert may be the first statement after midnight UTC.
	if _, err := b.admin.Exec(ctx, "SELECT audit.make_leaf('team', (now() AT TIME ZONE 'UTC')::date - d) FROM generate_series(-1, 2) d"); err != nil {
		t.Fatal(err)
	}
	_, err := b.admin.Exec(ctx, `
		INSERT INTO audit.events_team (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		SELECT gen_random_uuid(), $1, date_trunc('second', now()) - (i / 10) * interval '1 minute',
		       'auth.signout', 'auth', 'system', '{}'
		FROM generate_series(0, 2999) i`, org)
	if err != nil {
		t.Fatal(err)
	}
	want := b.teamIDs(t, org, 3000)

	p, _ := b.page(t, org, token, "limit=97")
	// From here on, new events keep arriving at the top while the walk goes
	// down. (Started after the first page: on a busy machine a writer
	// started earlier could fill it before the walk begins.)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // new events keep arriving, at the top
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := auditlog.Log(ctx, b.admin, auditlog.Event{OrgID: org, Action: auditlog.AuthSignout}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	first := p.ids()
	start := slices.Index(first, want[0])
	if start < 0 {
		t.Fatalf("first page does not reach the events placed: %v", first)
	}
	got := first[start:]
	for pages := 1; p.NextCursor != nil; pages++ {
		if pages > 100 {
			t.Fatal("too many pages")
		}
		link := p.linkNext(t)
		if !strings.Contains(link, "cursor="+url.QueryEscape(*p.NextCursor)) || !strings.Contains(link, "limit=97") {
			t.Fatalf("Link %q does not carry the next cursor and the limit", link)
		}
		resp, body := b.get(t, link, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", link, resp.StatusCode, body)
		}
		p = decodePage(t, body)
		p.resp = resp
		got = append(got, p.ids()...)
	}
	close(stop)
	wg.Wait()
	if !slices.Equal(got, want) {
		t.Fatalf("walk returned %d events, want the %d placed, each once, in order", len(got), len(want))
	}
}

// TestCursorRefused: a changed cursor, another org's cursor and garbage are
// each a 400 naming the cursor parameter.
func TestCursorRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	user, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "owner"})
	other := fixture.Org(t, b.admin, fixture.OrgOpts{Plan: "team"})
	if _, err := b.admin.Exec(context.Background(), "INSERT INTO cloud.org_members (org_id, user_id, role) VALUES ($1, $2, 'owner')", other, user); err != nil {
		t.Fatal(err)
	}
	both := b.token(t, user, tokenOpts{})
	for range 3 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: other})
	}
	p, _ := b.page(t, org, token, "limit=1")
	cursor := *p.NextCursor
	tampered := []byte(cursor)
	tampered[20] ^= 1
	if tampered[20] == '-' || tampered[20] == '_' || tampered[20] > 'z' {
		tampered[20] = 'A'
	}
	cases := []struct{ org, token, cursor, reason string }{
		{org, token, string(tampered), "not a cursor this API issued"},
		{org, token, "garbage", "not a cursor this API issued"},
		{org, token, strings.Repeat("A", 76), "not a cursor this API issued"},
		{other, both, cursor, "another org"},
	}
	for _, c := range cases {
		resp, body := b.get(t, "/api/orgs/"+c.org+"/audit?cursor="+url.QueryEscape(c.cursor), c.token)
		pb := wantProblem(t, resp, body, http.StatusBadRequest)
		if len(pb.InvalidParams) != 1 || pb.InvalidParams[0].Name != "cursor" || !strings.Contains(pb.InvalidParams[0].Reason, c.reason) {
			t.Errorf("cursor %q: %s", c.cursor, body)
		}
	}
	// The same cursor works for the org it came from, with the same user.
	if p, _ := b.page(t, org, both, "limit=1&cursor="+url.QueryEscape(cursor)); len(p.Events) != 1 {
		t.Fatalf("cursor refused for its own org: %v", p.ids())
	}
}

// TestInvalidParameters: every bad input is a 400 problem naming the
// parameter.
func TestInvalidParameters(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	cases := []struct{ query, param string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"limit=1&limit=2", "limit"},
		{"range=2y", "range"},
		{"q=colour:red", "q"},
		{"bom=1", "bom"},
		{"range=7d&since=2026-01-01T00:00:00Z", "range"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"},
		{"since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"},
		{"target_type=robot", "target_type"},
		{"format=xml", "format"},
		{"format=csv&limit=10", "limit"},
		{"action=" + strings.Repeat("a", 101), "action"},
		{"action=%00", "action"},
		{"actor=%FF%FE", "actor"},
		{"cursor=" + strings.Repeat("x", 201), "cursor"},
		{"colour=red", "colour"},
	}
	for _, c := range cases {
		resp, body := b.get(t, "/api/orgs/"+org+"/audit?"+c.query, token)
		p := wantProblem(t, resp, body, http.StatusBadRequest)
		if len(p.InvalidParams) == 0 || p.InvalidParams[0].Name != c.param || !strings.Contains(p.Detail, c.param) {
			t.Errorf("%q: want the problem to name %q: %s", c.query, c.param, body)
		}
	}
}

// TestPageEndsAtByteBudget: with events of large metadata, a page ends
// early, before its body passes the byte budget, with a cursor that carries
// on, so a walk still returns every event exactly once, in order; an event
// larger than the budget comes on a page of its own.
func TestPageEndsAtByteBudget(t *testing.T) {
	t.Parallel()
	const budget = 64 << 10
	b := setup(t, Config{RateLimit: math.Inf(1), PageBytes: budget})
	ctx := context.Background()
	org, token := b.owner(t, "team")
	// 60 events of about 10 KB, three per timestamp, and one of 200 KB (as
	// stored before log_event measured metadata uncompressed) among them.
	// Tomorrow's leaf too: the insert may be the first statement after
	// midnight UTC.
	if _, err := b.admin.Exec(ctx, "SELECT audit.make_leaf('team', (now() AT TIME ZONE 'UTC')::date - d) FROM generate_series(-1, 1) d"); err != nil {
		t.Fatal(err)
	}
	_, err := b.admin.Exec(ctx, `
		INSERT INTO audit.events_team (id, org_id, occurred_at, action, target_type, actor_type, metadata)
		SELECT gen_random_uuid(), $1, date_trunc('second', now()) - (i / 3) * interval '1 minute',
		       'auth.signout', 'auth', 'system',
		       jsonb_build_object('blob', repeat(md5(i::text), CASE i WHEN 31 THEN 6250 ELSE 310 END))
		FROM generate_series(0, 60) i`, org)
	if err != nil {
		t.Fatal(err)
	}
	want := b.teamIDs(t, org, 61)

	var got []string
	path := "/api/orgs/" + org + "/audit?limit=1000"
	pages, alone := 0, false
	for {
		resp, body := b.get(t, path, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		p := decodePage(t, body)
		p.resp = resp
		pages++
		if len(body) > budget+200 { // the events, and the body's frame around them
			if len(p.Events) != 1 {
				t.Errorf("page %d: %d bytes, %d events, over the %d-byte budget", pages, len(body), len(p.Events), budget)
			}
			alone = true
		}
		got = append(got, p.ids()...)
		if p.NextCursor == nil {
			break
		}
		if pages > 60 {
			t.Fatal("too many pages")
		}
		path = p.linkNext(t)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("walk returned %d events, want the %d placed, each once, in order", len(got), len(want))
	}
	if pages < 61*10_000/budget || !alone {
		t.Errorf("%d pages (the 200 KB event alone: %v): the budget did not end pages early", pages, alone)
	}
}

// teamIDs lists the ids of org's events in the team tier, newest first, and
// fails the test unless there are n.
func (b *testBundle) teamIDs(t *testing.T, org string, n int) []string {
	t.Helper()
	var ids []string
	rows, _ := b.admin.Query(context.Background(), "SELECT id::text FROM audit.events_team WHERE org_id = $1 ORDER BY occurred_at DESC, id DESC", org)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	if rows.Err() != nil || len(ids) != n {
		t.Fatalf("setup: %d events, want %d: %v", len(ids), n, rows.Err())
	}
	return ids
}

// TestGetEventByID: an event's link finds it, with its time or without; an
// id of another org's event, an unknown or malformed id, a wrong time, or an
// event older than the plan keeps is a 404, to owners of the org only.
func TestGetEventByID(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "free")
	other, _ := b.owner(t, "free")
	at := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	id := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: at, Action: "pat.created",
		ActorEmail: "ann@example.com", Metadata: `{"name": "terraform"}`})
	old := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().AddDate(0, 0, -8)})
	theirs := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: other})
	path := func(event, query string) string { return "/api/orgs/" + org + "/audit/events/" + event + query }

	for _, query := range []string{"", "?at=" + url.QueryEscape(at.Format(time.RFC3339Nano))} {
		resp, body := b.get(t, path(id, query), token)
		var e store.ListedEvent
		if resp.StatusCode != http.StatusOK || decodeJSON(body, &e) != nil || e.ID != id || e.Action != "pat.created" ||
			!e.OccurredAt.Equal(at) || !strings.Contains(string(e.Metadata), `"terraform"`) {
			t.Errorf("%s: %d %s", query, resp.StatusCode, body)
		}
	}
	for name, p := range map[string]string{
		"another org's event": path(theirs, ""), "older than the plan keeps": path(old, ""), "unknown id": path(uuid.NewString(), ""),
		"not a uuid": path("nope", ""), "a wrong time": path(id, "?at="+url.QueryEscape(at.Add(time.Second).Format(time.RFC3339Nano))),
	} {
		if resp, body := b.get(t, p, token); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", name, resp.StatusCode, body)
		}
	}
	resp, body := b.get(t, path(id, "?at=yesterday"), token)
	if p := wantProblem(t, resp, body, http.StatusBadRequest); len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != "at" {
		t.Errorf("bad at: %s", body)
	}
	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "member"})
	resp, body = b.get(t, path(id, ""), b.token(t, member, tokenOpts{}))
	wantProblem(t, resp, body, http.StatusForbidden)
}

// TestActorAnyCase: the actor filter matches an email in any case, in the
// list, the CSV export and the summary (ADA@... finds ada@...), letters
// beyond ASCII too, whatever the database's locale (ÉMILE@ÜBER... finds
// Émile@über...; a C-locale database lowers only A to Z).
func TestActorAnyCase(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	ann := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "Ann@Example.com"})
	emile := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "Émile@über.example"})
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, ActorEmail: "emile@uber.example"})
	for actor, want := range map[string]string{
		"ann@example.com": ann, "ANN@EXAMPLE.COM": ann, "Ann@Example.com": ann,
		"émile@über.example": emile, "ÉMILE@ÜBER.EXAMPLE": emile, "Émile@Über.Example": emile,
	} {
		query := "actor=" + url.QueryEscape(actor)
		if p, _ := b.page(t, org, token, query); !slices.Equal(p.ids(), []string{want}) {
			t.Errorf("%s: %v, want %s", actor, p.ids(), want)
		}
		if _, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv&"+query, token); strings.Count(string(body), "\n") != 2 || !strings.Contains(string(body), want) {
			t.Errorf("%s: CSV %s", actor, body)
		}
		if s := b.summary(t, org, token, query); s.Total != 1 {
			t.Errorf("%s: summary total %d", actor, s.Total)
		}
	}
}
