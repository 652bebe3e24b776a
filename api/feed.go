package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditlog/auditlog/internal/store"
)

// The query parameters of GET /api/orgs/{id}/audit/feed.
var feedParamNames = []string{"after", "limit", "wait", "format", "action", "target_type", "actor", "q"}

// feedFormats are the values of the feed's format.
var feedFormats = []string{"json", "ndjson"}

const (
	// maxWait is the longest a feed request waits for new events.
	maxWait = 30 * time.Second
	// waitPoll is how often a waiting feed request looks for new events.
	waitPoll = 200 * time.Millisecond
	// maxOrgFeedWaits bounds the feed requests of one org waiting at once:
	// each reads the database every waitPoll, so the rate limit alone
	// would let one token hold hundreds open.
	maxOrgFeedWaits = 4
)

type feedParams struct {
	filterParams
	after  int64
	wait   time.Duration
	ndjson bool
}

func parseFeedParams(q url.Values) (feedParams, error) {
	p := feedParams{filterParams: filterParams{limit: defaultLimit}}
	var bad []invalidParam
	badf := func(name, format string, args ...any) {
		bad = append(bad, invalidParam{Name: name, Reason: fmt.Sprintf(format, args...)})
	}
	eachParam(q, feedParamNames, badf, func(name, v string) {
		if p.filterParams.set(name, v, badf) {
			return
		}
		switch name {
		case "after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				badf(name, "must be a seq: a whole number from 0")
			}
			p.after = n
		case "wait":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > int(maxWait/time.Second) { // n*time.Second may overflow
				badf(name, "must be a whole number of seconds from 0 to %d", int(maxWait/time.Second))
			}
			p.wait = time.Duration(n) * time.Second
		case "format":
			if !slices.Contains(feedFormats, v) {
				badf(name, "must be json or ndjson")
			}
			p.ndjson = v == "ndjson"
		}
	})
	if !p.search.since.IsZero() || !p.search.until.IsZero() {
		badf("q", "created: narrows the list, its export and summary; the feed goes in commit order from after")
	}
	if len(bad) > 0 {
		return feedParams{}, invalidParams(bad)
	}
	return p, nil
}

// feedPage is the JSON body of a feed page.
type feedPage struct {
	Events []json.RawMessage `json:"events"` // store.FeedEvent
	// NextAfter is the after of the next request: the last seq this page
	// read, shown or not.
	NextAfter int64 `json:"next_after"`
	// HeadSeq is the org's last sealed seq when the page was read; the feed
	// is caught up when next_after reaches it.
	HeadSeq int64 `json:"head_seq"`
	// FirstSeq is the org's first seq still stored: events before it were
	// removed by retention (0: nothing sealed yet).
	FirstSeq int64 `json:"first_seq"`
}

// feed serves GET /api/orgs/{id}/audit/feed: the org's sealed events after
// a seq, in seq (commit) order, each once; with wait, a caught-up request
// waits for the next event.
func (s *server) feed(c *gin.Context) {
	p, err := parseFeedParams(c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	org := orgOf(c).String()
	if p.wait > 0 {
		if !s.feedWaits.acquire(org) {
			s.writeProblem(c, tooManyRequests(fmt.Sprintf("%d feed requests of this org are waiting, the most one org may hold open; retry when one answers, or without wait", maxOrgFeedWaits), time.Second))
			return
		}
		defer s.feedWaits.release(org)
	}
	q := store.FeedQuery{OrgID: org, After: p.after, Limit: p.limit, Actor: p.actor}
	if p.filtersActions() {
		actions, err := s.catalog.get(ctx)
		if err != nil {
			s.fail(c, err)
			return
		}
		q.Actions = actionFilter(actions, p.filterParams)
	}
	deadline := time.Now().Add(p.wait)
	var page store.FeedPage
	for {
		if page, err = s.feedPage(ctx, q); err != nil {
			s.fail(c, err)
			return
		}
		if len(page.Events) > 0 || page.Next < page.Head || !time.Now().Before(deadline) {
			break
		}
		q.After = page.Next // what was read matched nothing
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(waitPoll, time.Until(deadline))):
		}
	}
	// Within the page byte budget, as the listing: the page ends early and
	// next_after says where to go on.
	events, size := []json.RawMessage{}, 0
	for _, e := range page.Events {
		b, err := json.Marshal(e)
		if err != nil {
			s.fail(c, err)
			return
		}
		if len(events) > 0 && size+len(b)+1 > s.pageBytes {
			page.Next = e.Seq - 1
			break
		}
		events, size = append(events, b), size+len(b)+1
	}
	u := *c.Request.URL
	query := u.Query()
	query.Set("after", strconv.FormatInt(page.Next, 10))
	c.Header("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, u.Path, query.Encode()))
	c.Header("Cache-Control", "no-store")
	if !p.ndjson {
		c.JSON(http.StatusOK, feedPage{Events: events, NextAfter: page.Next, HeadSeq: page.Head, FirstSeq: page.First})
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Feed-Next-After", strconv.FormatInt(page.Next, 10))
	h.Set("Feed-Head-Seq", strconv.FormatInt(page.Head, 10))
	h.Set("Feed-First-Seq", strconv.FormatInt(page.First, 10))
	c.Status(http.StatusOK)
	for _, b := range events {
		if _, err := c.Writer.Write(append(b, '\n')); err != nil {
			return // the client went away
		}
	}
}

// feedPage reads one page within the query timeout, in the org's current
// read scope.
func (s *server) feedPage(ctx context.Context, q store.FeedQuery) (store.FeedPage, error) {
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	scope, err := s.store.Scope(ctx, q.OrgID, s.asOf())
	if err != nil {
		return store.FeedPage{}, err
	}
	q.Tiers, q.Floor = scope.Tiers, scope.Floor
	return s.store.Feed(ctx, q)
}

// sealKeys serves GET /api/audit/keys: the public keys that sign
// checkpoints, for verifying the chain offline.
func (s *server) sealKeys(c *gin.Context) {
	keys, err := s.store.SealKeys(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"keys": keys})
}

// checkpoints serves GET /api/orgs/{id}/audit/checkpoints: the org's signed
// checkpoints from where its stored chain starts.
func (s *server) checkpoints(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	cps, err := s.store.Checkpoints(ctx, orgOf(c).String())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"checkpoints": cps})
}

// streams lists the org's subscriptions (never their destinations' URLs or
// secrets) with their latest attempts (docs/delivery.md).
func (s *server) streams(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	streams, err := s.store.Streams(ctx, orgOf(c).String())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"streams": streams})
}
