package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/chain"
	"github.com/auditlog/auditlog/internal/fixture"
	"github.com/auditlog/auditlog/internal/sealtest"
	"github.com/auditlog/auditlog/internal/verify"
	"github.com/auditlog/auditlog/sealer"
)

// feedPageBody is a feed page as a client decodes it.
type feedPageBody struct {
	Events []struct {
		Seq    int64  `json:"seq"`
		Hash   string `json:"hash"`
		ID     string `json:"id"`
		Action string `json:"action"`
	} `json:"events"`
	NextAfter int64 `json:"next_after"`
	HeadSeq   int64 `json:"head_seq"`
	FirstSeq  int64 `json:"first_seq"`
}

func (b *testBundle) feedPage(t testing.TB, org, token, query string) feedPageBody {
	t.Helper()
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/feed?"+query, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed ?%s: %d %s", query, resp.StatusCode, body)
	}
	var p feedPageBody
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return p
}

// walkFeed reads the feed from after until caught up and returns the
// events' ids in the order read, checking that seqs follow each other.
func (b *testBundle) walkFeed(t testing.TB, org, token string, after int64, query string) (ids []string, next int64) {
	t.Helper()
	for {
		p := b.feedPage(t, org, token, fmt.Sprintf("after=%d&limit=2%s", after, query))
		for _, e := range p.Events {
			if e.Seq <= after || len(e.Hash) != 64 {
				t.Fatalf("event %s: seq %d after %d, hash %q", e.ID, e.Seq, after, e.Hash)
			}
			if query == "" && e.Seq != after+1 {
				t.Fatalf("event %s has seq %d after %d: a gap", e.ID, e.Seq, after)
			}
			after = e.Seq
			ids = append(ids, e.ID)
		}
		if p.NextAfter < after {
			t.Fatalf("next_after %d went back from %d", p.NextAfter, after)
		}
		after = p.NextAfter
		if after == p.HeadSeq {
			return ids, after
		}
	}
}

// The lost event: A records first and commits 2 s later, B commits
// in between. A walk that has read B still gets A, after B, exactly once.
func TestFeedReturnsALateCommitAfterTheWalkPassedIt(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	ctx := context.Background()
	if _, err := b.admin.Exec(ctx, "SELECT audit.premake_leaves(1)"); err != nil {
		t.Fatal(err)
	}
	sealtest.Start(t, b.url, sealer.Config{})
	first := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
	sealtest.WaitSealed(t, b.admin, org, 1)

	late, err := b.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	var lateID string
	if err := late.QueryRow(ctx, "SELECT audit.log_event($1, 'cluster.deleted', 'c1', '{\"name\": \"prod\"}')", org).Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	early := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
	sealtest.WaitSealed(t, b.admin, org, 2)
	ids, next := b.walkFeed(t, org, token, 0, "")
	if !slices.Equal(ids, []string{first, early}) || next != 2 {
		t.Fatalf("before the late commit: %v up to %d, want %v", ids, next, []string{first, early})
	}

	// A caught-up request with wait answers once the late event is sealed.
	committed := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		committed <- late.Commit(ctx)
	}()
	p := b.feedPage(t, org, token, "after=2&wait=10")
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 1 || p.Events[0].ID != lateID || p.Events[0].Seq != 3 || p.NextAfter != 3 {
		t.Fatalf("waiting for the late commit: %+v, want %s as seq 3", p, lateID)
	}
	if ids, _ := b.walkFeed(t, org, token, 0, ""); !slices.Equal(ids, []string{first, early, lateID}) {
		t.Fatalf("a walk from the start: %v", ids)
	}
}

// Filters skip events, but next_after moves on to the head, so a filtered
// walk ends; ndjson carries the same page as lines and headers.
func TestFeedFiltersAndNDJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	sealtest.Start(t, b.url, sealer.Config{})
	var signins []string
	for i := range 6 {
		action := "auth.signout"
		if i%3 == 0 {
			action = "auth.signin"
		}
		id := fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Action: action})
		if action == "auth.signin" {
			signins = append(signins, id)
		}
	}
	sealtest.WaitSealed(t, b.admin, org, 6)
	if ids, next := b.walkFeed(t, org, token, 0, "&action=auth.signin"); !slices.Equal(ids, signins) || next != 6 {
		t.Fatalf("filtered walk: %v up to %d, want %v up to 6", ids, next, signins)
	}
	if p := b.feedPage(t, org, token, "after=6&wait=1"); len(p.Events) != 0 || p.NextAfter != 6 || p.HeadSeq != 6 || p.FirstSeq != 1 {
		t.Fatalf("caught up: %+v", p)
	}

	resp, body := b.get(t, "/api/orgs/"+org+"/audit/feed?format=ndjson&after=1&limit=3", token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("ndjson: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var seqs []int64
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var e struct{ Seq int64 }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []int64{2, 3, 4}) || resp.Header.Get("Feed-Next-After") != "4" || resp.Header.Get("Feed-Head-Seq") != "6" {
		t.Fatalf("ndjson: seqs %v, headers %v", seqs, resp.Header)
	}
}

func TestFeedRefusesBadParametersAndNonOwners(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "free")
	for _, q := range []string{"after=-1", "after=x", "wait=31", "wait=-1", "wait=18446744074", "limit=0", "limit=1001", "format=csv", "cursor=x", "after=1&after=2"} {
		resp, body := b.get(t, "/api/orgs/"+org+"/audit/feed?"+q, token)
		wantProblem(t, resp, body, http.StatusBadRequest)
	}
	member, _ := fixture.User(t, b.admin, fixture.UserOpts{OrgID: org, Role: "member"})
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/feed", b.token(t, member, tokenOpts{}))
	wantProblem(t, resp, body, http.StatusForbidden)
	// Nothing sealed yet: an empty page at seq 0.
	if p := b.feedPage(t, org, token, ""); len(p.Events) != 0 || p.NextAfter != 0 || p.HeadSeq != 0 {
		t.Fatalf("no seals: %+v", p)
	}
}

// A page reads the seals of at most 7 days of occurred_at, however large
// the limit; the walk still returns every event.
func TestFeedPageSpansAtMostAWeek(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "enterprise")
	var want []string
	for i := 9; i >= 0; i-- {
		want = append(want, fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: time.Now().Add(-time.Duration(i) * 3 * 24 * time.Hour)}))
	}
	sealtest.Start(t, b.url, sealer.Config{})
	sealtest.WaitSealed(t, b.admin, org, 10)
	p := b.feedPage(t, org, token, "limit=1000")
	if len(p.Events) != 3 || p.NextAfter != 3 {
		t.Fatalf("first page: %d events up to %d, want the 3 of its first week", len(p.Events), p.NextAfter)
	}
	if ids, _ := b.walkFeed(t, org, token, 0, ""); !slices.Equal(ids, want) {
		t.Fatalf("walk: %v, want %v", ids, want)
	}
}

// A feed saved as NDJSON, with the org's checkpoints and the key from the
// API, verifies offline; a changed or dropped line breaks it where it is.
func TestFeedVerifiesOffline(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	sealtest.Start(t, b.url, sealer.Config{CheckpointEvery: 50 * time.Millisecond})
	for i := range 5 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Metadata: fmt.Sprintf(`{"n": %d, "b": [1.50, "x\u00e9"], "a": {"z": null, "y": 1e2}}`, i)})
	}
	sealtest.WaitSealed(t, b.admin, org, 5)
	sealtest.WaitCheckpoint(t, b.admin, org, 5)
	resp, feed := b.get(t, "/api/orgs/"+org+"/audit/feed?format=ndjson", token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: %d", resp.StatusCode)
	}
	_, cpBody := b.get(t, "/api/orgs/"+org+"/audit/checkpoints", token)
	cps, err := verify.ReadCheckpoints(bytes.NewReader(cpBody))
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints %s: %v", cpBody, err)
	}
	_, keyBody := b.get(t, "/api/audit/keys", token)
	var keyList struct {
		Keys []struct {
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(keyBody, &keyList); err != nil || len(keyList.Keys) != 1 {
		t.Fatalf("keys %s: %v", keyBody, err)
	}
	pub, err := chain.ParsePublicKey([]byte(keyList.Keys[0].PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{chain.KeyID(pub): pub}

	res, err := verify.File(bytes.NewReader(feed), cps, keys, false)
	if err != nil || res.Break != nil || res.Verified != 5 || res.Checkpoints == 0 {
		t.Fatalf("the feed as served: %+v, %v", res, err)
	}
	lines := bytes.SplitAfter(feed, []byte("\n"))
	for _, c := range []struct {
		name string
		feed []byte
		at   int64
	}{
		{"an action changed", slices.Concat(lines[0], bytes.Replace(lines[1], []byte(`"auth.signout"`), []byte(`"auth.signin"`), 1), slices.Concat(lines[2:]...)), 2},
		{"a line dropped", slices.Concat(lines[0], lines[1], slices.Concat(lines[3:]...)), 4},
	} {
		res, err := verify.File(bytes.NewReader(c.feed), cps, keys, false)
		if err != nil || res.Break == nil || res.Break.Seq != c.at {
			t.Errorf("%s: %+v, %v; want a break at seq %d", c.name, res, err, c.at)
		}
	}
	// A key other than the signer's fails the checkpoints.
	other := sealtest.Key(t).Public().(ed25519.PublicKey)
	if res, err := verify.File(bytes.NewReader(feed), cps, map[string]ed25519.PublicKey{chain.KeyID(other): other}, false); err != nil || res.Break == nil {
		t.Errorf("with another key: %+v, %v", res, err)
	}
}

// /metrics says whether a sealer runs and when it last sealed.
func TestMetricsShowTheSealer(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, _ := b.owner(t, "team")
	if got := metricValue(t, b, "auditlog_sealer_active"); got != -1 {
		t.Fatalf("auditlog_sealer_active = %v before any sealer ran, want no series", got)
	}
	stop := sealtest.Start(t, b.url, sealer.Config{})
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
	sealtest.WaitSealed(t, b.admin, org, 1)
	if got := metricValue(t, b, "auditlog_sealer_active"); got != 1 {
		t.Errorf("auditlog_sealer_active = %v while it runs", got)
	}
	if got := metricValue(t, b, "auditlog_sealer_last_sealed_timestamp_seconds"); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("auditlog_sealer_last_sealed_timestamp_seconds = %v", got)
	}
	if got := metricValue(t, b, "auditlog_sealer_behind_bytes"); got < 0 {
		t.Errorf("auditlog_sealer_behind_bytes = %v", got)
	}
	stop()
	sealtest.WaitFor(t, b.admin, "the sealer reported stopped", func(context.Context) (bool, error) {
		return metricValue(t, b, "auditlog_sealer_active") == 0, nil
	})
}

// A feed page ends before it passes the page byte budget, and next_after
// carries on: the walk still returns every event once.
func TestFeedPageKeepsToTheByteBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1), PageBytes: 3000})
	org, token := b.owner(t, "team")
	sealtest.Start(t, b.url, sealer.Config{})
	big := fmt.Sprintf(`{"note": %q}`, strings.Repeat("x", 1000))
	var want []string
	for range 7 {
		want = append(want, fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, Metadata: big}))
	}
	sealtest.WaitSealed(t, b.admin, org, 7)
	var got []string
	pages := 0
	for after := int64(0); after < 7; pages++ {
		p := b.feedPage(t, org, token, fmt.Sprintf("after=%d&limit=1000", after))
		if len(p.Events) == 0 || len(p.Events) > 2 {
			t.Fatalf("page after %d holds %d events of about 1.3 kB, want 1 or 2 within 3000 bytes", after, len(p.Events))
		}
		for _, e := range p.Events {
			got = append(got, e.ID)
		}
		after = p.NextAfter
	}
	if !slices.Equal(got, want) || pages < 4 {
		t.Fatalf("walk in %d pages: %v, want %v", pages, got, want)
	}
}

// Retention removed every event of an org and the sealer pruned their
// seals (the head stays): a consumer still behind gets next_after at the
// head, caught up, rather than the same empty page forever.
func TestFeedBehindEverySealPrunedCatchesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "team")
	stop := sealtest.Start(t, b.url, sealer.Config{})
	for range 3 {
		fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org})
	}
	sealtest.WaitSealed(t, b.admin, org, 3)
	stop()
	// What prune_seals leaves once the events are gone: no seal, the head.
	if _, err := b.admin.Exec(context.Background(), "DELETE FROM audit.seals WHERE org_id = $1", org); err != nil {
		t.Fatal(err)
	}
	p := b.feedPage(t, org, token, "after=1")
	if len(p.Events) != 0 || p.NextAfter != 3 || p.HeadSeq != 3 || p.FirstSeq != 0 {
		t.Fatalf("behind seals all pruned: %+v, want next_after 3 (the head)", p)
	}
}

// A waiting feed request polls the database five times a second for up to
// 30 s, so one token within its rate limit could hold hundreds open and
// take the pool; an org holds at most maxOrgFeedWaits open, and another
// waiting request is answered 429 at once.
func TestFeedWaitsAreBoundedPerOrg(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{RateLimit: math.Inf(1)})
	org, token := b.owner(t, "free")
	done := make(chan int, maxOrgFeedWaits)
	for range maxOrgFeedWaits {
		go func() {
			resp, _ := b.get(t, "/api/orgs/"+org+"/audit/feed?wait=3", token)
			done <- resp.StatusCode
		}()
	}
	time.Sleep(time.Second) // every one of them is waiting
	resp, body := b.get(t, "/api/orgs/"+org+"/audit/feed?wait=1", token)
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if p := b.feedPage(t, org, token, "wait=0"); p.HeadSeq != 0 {
		t.Fatalf("a request that does not wait: %+v", p)
	}
	for range maxOrgFeedWaits {
		if code := <-done; code != http.StatusOK {
			t.Errorf("a waiting request: %d", code)
		}
	}
	b.feedPage(t, org, token, "wait=1")
}
