package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones by name on a host without a zone database
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/auditlog/auditlog/internal/store"
)

// summary is the JSON body of GET /api/orgs/{id}/audit/summary.
type summary struct {
	Org orgSummary `json:"org"`
	// Since and Until bound the range counted, after the retention floor.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// TimeZone and Bucket are how the events are grouped: by hour, day or
	// week of an IANA time zone.
	TimeZone string `json:"time_zone"`
	Bucket   string `json:"bucket"`
	// Total is how many events match, all buckets together.
	Total int64 `json:"total"`
	// Days has one entry per bucket of the range, oldest first, zeros
	// included.
	Days []bucketCount `json:"days"`
}

// orgSummary says whose log it is and how far back the plan keeps it.
type orgSummary struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Plan          string `json:"plan"`
	RetentionDays int    `json:"retention_days"`
	// KeptSince is the retention floor: nothing older is shown, whatever
	// range is asked for.
	KeptSince time.Time `json:"kept_since"`
}

// bucketCount is the number of matching events of one bucket.
type bucketCount struct {
	Day string `json:"day"` // YYYY-MM-DD of Start, in the time zone
	// Start and End (excluded) are the bucket's part of the range, with the
	// time zone's offset: the first starts at Since, the last ends at
	// Until, so a bucket the range cuts says what it counts.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Count int64     `json:"count"`
}

// pageOnlyParams make no sense for a summary, which has no pages.
var pageOnlyParams = []string{"limit", "cursor", "format"}

// maxSummaryBuckets bounds the entries of a summary: an hour's buckets over 41
// days at most.
const maxSummaryBuckets = 1000

// maxZoneLen is the longest time zone name accepted (the longest IANA
// name has 32 characters).
const maxZoneLen = 64

// summarize serves GET /api/orgs/{id}/audit/summary: the org's name, plan and
// retention, and how many events match the filters in each hour, day or
// week of the range — what the Activity page states and charts above the
// log.
func (s *server) summarize(c *gin.Context) {
	query := c.Request.URL.Query()
	var bad []invalidParam
	for _, name := range pageOnlyParams {
		if query.Has(name) {
			bad = append(bad, invalidParam{Name: name, Reason: "pages and exports only: a summary counts every matching event"})
		}
	}
	bucket, zone, loc, groupBad := parseGrouping(query)
	bad = append(bad, groupBad...)
	if len(bad) > 0 {
		s.fail(c, invalidParams(bad))
		return
	}
	query.Del("tz")
	query.Del("bucket")
	params, err := parseListParams(query)
	if err != nil {
		s.fail(c, err)
		return
	}
	q, scope, err := s.eventQuery(c, params)
	if err != nil {
		s.fail(c, err)
		return
	}
	until := q.Before.OccurredAt
	if now := s.now(); until.After(now) {
		until = now
	}
	starts := bucketStarts(q.Since, until, bucket, loc)
	if len(starts) > maxSummaryBuckets {
		s.fail(c, invalidParamProblem("bucket", fmt.Sprintf("the range has more than %d %ss, one bucket each: choose a longer bucket or a shorter range", maxSummaryBuckets, bucket)))
		return
	}
	q.Bucket, q.Zone = bucket, zone
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	counts, err := s.store.CountByBucket(ctx, q)
	if err != nil {
		s.fail(c, err)
		return
	}
	body := summary{
		Org: orgSummary{ID: q.OrgID, Name: scope.Name, Plan: scope.Plan, RetentionDays: scope.RetentionDays,
			KeptSince: scope.Floor.UTC()},
		Since: q.Since.UTC(), Until: until.UTC(), TimeZone: zone, Bucket: bucket,
		Days: make([]bucketCount, len(starts)),
	}
	for i, start := range starts {
		end := until.In(loc)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		body.Days[i] = bucketCount{Day: start.Format(time.DateOnly), Start: start, End: end}
	}
	// Each count goes to the bucket starting at or before it: the same one
	// unless PostgreSQL and Go read a time the zone skips or repeats apart.
	for _, n := range counts {
		i, found := slices.BinarySearchFunc(starts, n.Start, time.Time.Compare)
		if !found {
			i = max(i-1, 0)
		}
		body.Days[i].Count += n.Count
		body.Total += n.Count
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, body)
}

// parseGrouping reads the summary's own parameters: bucket (hour, day or
// week; default day) and tz (an IANA time zone; default UTC).
func parseGrouping(q url.Values) (bucket, zone string, loc *time.Location, bad []invalidParam) {
	bucket, zone, loc = "day", "UTC", time.UTC
	for _, name := range []string{"bucket", "tz"} {
		if len(q[name]) > 1 {
			bad = append(bad, invalidParam{Name: name, Reason: fmt.Sprintf("given %d times; give it once", len(q[name]))})
		}
	}
	if v := q.Get("bucket"); q.Has("bucket") {
		if !slices.Contains(store.Buckets, v) {
			bad = append(bad, invalidParam{Name: "bucket", Reason: "must be one of " + strings.Join(store.Buckets, ", ")})
		}
		bucket = v
	}
	if v := q.Get("tz"); q.Has("tz") {
		l, err := loadZone(v)
		if err != nil {
			bad = append(bad, invalidParam{Name: "tz", Reason: "not an IANA time zone such as UTC or America/New_York"})
		}
		zone, loc = v, l
	}
	return bucket, zone, loc, bad
}

// loadZone loads an IANA time zone by name, from the copy of the zone
// database built into the binary if the host has none. Local is not one.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxZoneLen || strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '/' || r == '_' || r == '-' || r == '+' || unicode.IsLetter(r) || unicode.IsDigit(r)) || r > unicode.MaxASCII
	}) {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return time.LoadLocation(name)
}

// bucketStarts are the starts of the buckets of unit in loc covering
// [since, until), oldest first, stopping past maxSummaryBuckets; the first
// is since itself, not the start of the hour, day or week it falls in.
func bucketStarts(since, until time.Time, unit string, loc *time.Location) []time.Time {
	if !since.Before(until) {
		return nil
	}
	t := since.In(loc)
	y, m, d := t.Date()
	var start time.Time
	switch unit {
	case "hour":
		start = time.Date(y, m, d, t.Hour(), 0, 0, 0, loc)
	case "week": // ISO weeks start on Monday, as PostgreSQL's date_trunc
		start = midnight(y, m, d-(int(t.Weekday())+6)%7, loc)
	default:
		start = midnight(y, m, d, loc)
	}
	// The first bucket starts at since, the next where the clock next
	// starts an hour, day or week: not at since's in an hour the clock
	// repeats, whose two starts time.Date may read either way.
	starts := []time.Time{t}
	for ; start.Before(until) && len(starts) <= maxSummaryBuckets; start = nextBucket(start, unit) {
		if start.After(since) {
			starts = append(starts, start)
		}
	}
	return starts
}

// nextBucket is the start of the bucket after the one starting at t.
func nextBucket(t time.Time, unit string) time.Time {
	y, m, d := t.Date()
	switch unit {
	case "hour":
		return t.Add(time.Hour)
	case "week":
		return midnight(y, m, d+7, t.Location())
	default:
		return midnight(y, m, d+1, t.Location())
	}
}

// midnight is the first instant of day y-m-d (normalized as time.Date
// does) in loc: its midnight or, where the clock skips midnight (Santiago's
// goes from 23:59:59 to 01:00), the end of the skip, as PostgreSQL's
// date_trunc reads it. time.Date reads a skipped midnight in the offset
// after the skip, which is the evening before.
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if _, _, day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Date(); t.Day() != day {
		_, t = t.ZoneBounds()
	}
	return t
}
