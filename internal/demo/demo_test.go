package demo_test

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/demo"
	"github.com/auditlog/auditlog/internal/sentence"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testdb"
)

func TestMain(m *testing.M) {
	testdb.Main(m, func() error {
		if shared.drop == nil {
			return nil
		}
		return shared.drop()
	})
}

// counts are the rows a run of the demo could add.
type counts struct{ orgs, users, members, pats, events, planChanges int }

func countRows(t *testing.T, pool *pgxpool.Pool) counts {
	t.Helper()
	var c counts
	err := pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM cloud.orgs), (SELECT count(*) FROM cloud.users), (SELECT count(*) FROM cloud.org_members),
		(SELECT count(*) FROM cloud.pats),
		(SELECT count(*) FROM audit.events_free) + (SELECT count(*) FROM audit.events_team) + (SELECT count(*) FROM audit.events_enterprise),
		(SELECT count(*) FROM audit.plan_changes)`).Scan(&c.orgs, &c.users, &c.members, &c.pats, &c.events, &c.planChanges)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The demo on an empty database: two runs at once make it once, a third run
// later changes nothing.
func TestDemoOnEmptyDatabaseThenAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.NewPool(t)

	results := make([]demo.Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i], errs[i] = demo.Run(ctx, pool, demo.Config{Seed: uint64(i)}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if results[0].Created == results[1].Created {
		t.Fatalf("two concurrent runs: created %v and %v, want exactly one", results[0].Created, results[1].Created)
	}
	first := results[0]
	if !first.Created {
		first = results[1]
	}
	after := countRows(t, pool)
	if after.orgs != 4 || after.planChanges != 1 || after.events != first.Recorded+int(first.Imported.Loaded) {
		t.Fatalf("after the demo: %+v; recorded %d, imported %d", after, first.Recorded, first.Imported.Loaded)
	}
	plans := map[string]string{}
	for _, o := range first.Orgs {
		plans[o.ID] = o.Plan
	}
	if plans[demo.EnterpriseOrgID] != "enterprise" || plans[demo.TeamOrgID] != "team" || plans[demo.FreeOrgID] != "free" || plans[demo.UpgradedOrgID] != "team" {
		t.Fatalf("orgs and plans %+v", first.Orgs)
	}

	again, err := demo.Run(ctx, pool, demo.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || len(again.Orgs) != 4 || again.Recorded != 0 {
		t.Fatalf("third run: %+v", again)
	}
	if later := countRows(t, pool); later != after {
		t.Fatalf("third run changed the database: %+v, then %+v", after, later)
	}
}

// shared is a database the demo has run on, made once for the tests that
// only read it, and dropped when they are done.
var shared struct {
	once sync.Once
	url  string
	drop func() error
	res  demo.Result
	err  error
}

func demoDB(t *testing.T) (*pgxpool.Pool, demo.Result) {
	t.Helper()
	shared.once.Do(func() {
		ctx := context.Background()
		if shared.url, shared.drop, shared.err = testdb.Create(ctx); shared.err != nil {
			return
		}
		pool, err := pgxpool.New(ctx, shared.url)
		if err != nil {
			shared.err = err
			return
		}
		defer pool.Close()
		shared.res, shared.err = demo.Run(ctx, pool, demo.Config{Seed: 7})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return testdb.Pool(t, shared.url), shared.res
}

// The demo shows every action of the catalog, PAT activity, and actions
// with the request's context, and its history was bulk-imported.
func TestDemoHasEveryActionAndContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, res := demoDB(t)
	if res.Imported.Loaded == 0 || res.Imported.Loaded != res.Imported.Rows || res.Imported.Batches == 0 {
		t.Fatalf("history import %+v", res.Imported)
	}
	ids := []string{demo.EnterpriseOrgID, demo.TeamOrgID, demo.FreeOrgID, demo.UpgradedOrgID}
	present := map[string]bool{}
	rows, err := pool.Query(ctx, "SELECT DISTINCT action FROM audit.events WHERE org_id = ANY ($1::uuid[])", ids)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		rows.Scan(&a)
		present[a] = true
	}
	for _, a := range auditlog.Actions {
		if !present[string(a.Action)] {
			t.Errorf("no %s event in the demo", a.Action)
		}
	}

	// Recorded just now, through log_event, with the request's context.
	var recent, withContext, viaPAT, recentViaPAT int
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE occurred_at > now() - interval '10 minutes'),
		count(*) FILTER (WHERE occurred_at > now() - interval '10 minutes' AND actor_type = 'user'
		                 AND ip IS NOT NULL AND user_agent IS NOT NULL AND request_id LIKE 'req\_%'),
		count(*) FILTER (WHERE metadata ? 'via_pat'),
		count(*) FILTER (WHERE metadata ? 'via_pat' AND occurred_at > now() - interval '10 minutes')
		FROM audit.events WHERE org_id = ANY ($1::uuid[])`, ids).Scan(&recent, &withContext, &viaPAT, &recentViaPAT)
	if err != nil {
		t.Fatal(err)
	}
	if recent != res.Recorded || withContext < recent*3/4 || viaPAT < 20 || recentViaPAT < 3 {
		t.Fatalf("%d recent events (%d recorded), %d with a user, IP, user agent and request id; %d via a PAT, %d of them recent",
			recent, res.Recorded, withContext, viaPAT, recentViaPAT)
	}

	// The upgrade: the seed's subscription metadata, and the plan change
	// the retention worker will act on.
	var md map[string]any
	err = pool.QueryRow(ctx, `SELECT metadata FROM audit.events WHERE org_id = $1 AND action = 'billing.subscription_changed'`,
		demo.UpgradedOrgID).Scan(&md)
	if err != nil {
		t.Fatal(err)
	}
	if md["subscription_id"] == "" || md["previous_plan"] != "free" || md["new_plan"] != "team" ||
		md["previous_quantity"] != 1.0 || md["new_quantity"] != 3.0 {
		t.Fatalf("upgrade metadata %v", md)
	}
	var from, to string
	if err := pool.QueryRow(ctx, "SELECT from_tier, to_tier FROM audit.plan_changes WHERE org_id = $1", demo.UpgradedOrgID).Scan(&from, &to); err != nil || from != "free" || to != "team" {
		t.Fatalf("plan change %s -> %s (%v)", from, to, err)
	}

	// Every event of the demo about someone names a real account.
	var strangers int
	err = pool.QueryRow(ctx, `SELECT count(*) FROM audit.events e WHERE org_id = ANY ($1::uuid[]) AND actor_id IS NOT NULL
		AND NOT EXISTS (SELECT FROM cloud.users u WHERE u.id = e.actor_id AND u.email = e.actor_email)`, ids).Scan(&strangers)
	if err != nil || strangers != 0 {
		t.Fatalf("%d events by unknown actors (%v)", strangers, err)
	}
}

// Each plan's retention window is filled: a year for enterprise, a month for
// team, the free org's whole week since it was created, every day of it.
func TestDemoFillsEachRetentionWindow(t *testing.T) {
	t.Parallel()
	pool, _ := demoDB(t)
	for _, c := range []struct {
		org     string
		tier    string
		oldest  time.Duration // at least this old
		minDays int           // days with events
	}{
		{demo.EnterpriseOrgID, "enterprise", 364 * 24 * time.Hour, 365},
		{demo.TeamOrgID, "team", 29 * 24 * time.Hour, 30},
		{demo.FreeOrgID, "free", 6*24*time.Hour - time.Minute, 6},
	} {
		var oldest, newest time.Time
		var days int
		err := pool.QueryRow(context.Background(), `SELECT min(occurred_at), max(occurred_at),
			count(DISTINCT (occurred_at AT TIME ZONE 'UTC')::date) FROM audit.events_`+c.tier+` WHERE org_id = $1`, c.org).Scan(&oldest, &newest, &days)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(oldest) < c.oldest || time.Since(newest) > time.Minute || days < c.minDays {
			t.Errorf("%s: events from %v ago to %v ago on %d days; want from %v ago to now on %d days",
				c.tier, time.Since(oldest).Round(time.Hour), time.Since(newest).Round(time.Second), days, c.oldest, c.minDays)
		}
	}
}

// TestDemoReadsAsSentences: every event of the demo reads as a sentence
// about people and names, as the Activity page and Slack write it: nothing
// missing (…) and no bare id where the sentence names someone or something.
func TestDemoReadsAsSentences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := demoDB(t)
	catalog, err := store.New(pool).Actions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]string{}
	for _, a := range catalog {
		templates[a.Action] = a.Sentence
	}
	rows, _ := pool.Query(ctx, `SELECT id, org_id, occurred_at, action, target_type, target_id, actor_type, actor_id, actor_email,
		host(ip) AS ip, user_agent, request_id, metadata FROM audit.events`)
	events, err := pgx.CollectRows(rows, pgx.RowToStructByName[store.Event])
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`)
	same := func(s string) string { return s }
	bad := map[string]string{}
	for _, e := range events {
		s := sentence.Render(templates[e.Action], e, same, same)
		if strings.Contains(s, "…") || id.MatchString(s) {
			bad[e.Action] = s
		}
	}
	for action, s := range bad {
		t.Errorf("%s reads %q", action, s)
	}
}
