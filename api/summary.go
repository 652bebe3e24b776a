package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// summary is the JSON body of GET /api/orgs/{id}/audit/summary.
type summary struct {
	Org orgSummary `json:"org"`
	// Since and Until bound the range counted, after the retention floor.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Days has one entry per UTC day of the range, oldest first, zeros
	// included.
	Days []dayCount `json:"days"`
}

// orgSummary says whose log it is and how far back the plan keeps it.
type orgSummary struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Plan          string `json:"plan"`
	RetentionDays int    `json:"retention_days"`
}

// dayCount is the number of matching events of one UTC day.
type dayCount struct {
	Day   string `json:"day"` // YYYY-MM-DD
	Count int64  `json:"count"`
}

// pageOnlyParams make no sense for a summary, which has no pages.
var pageOnlyParams = []string{"limit", "cursor", "format"}

// summarize serves GET /api/orgs/{id}/audit/summary: the org's name, plan and
// retention, and how many events match the filters on each day of the
// range — what the Activity page states and charts above the log.
func (s *server) summarize(c *gin.Context) {
	query := c.Request.URL.Query()
	var bad []invalidParam
	for _, name := range pageOnlyParams {
		if query.Has(name) {
			bad = append(bad, invalidParam{Name: name, Reason: "pages and exports only: a summary counts every matching event"})
		}
	}
	if len(bad) > 0 {
		s.fail(c, invalidParams(bad))
		return
	}
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
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	counts, err := s.store.CountByDay(ctx, q)
	if err != nil {
		s.fail(c, err)
		return
	}
	until := q.Before.OccurredAt
	if now := s.now(); until.After(now) {
		until = now
	}
	body := summary{
		Org:   orgSummary{ID: q.OrgID, Name: scope.Name, Plan: scope.Plan, RetentionDays: scope.RetentionDays},
		Since: q.Since.UTC(), Until: until.UTC(), Days: []dayCount{},
	}
	byDay := map[string]int64{}
	for _, d := range counts {
		byDay[d.Day.Format(time.DateOnly)] = d.Count
	}
	for day := utcDay(q.Since); !day.After(until); day = day.AddDate(0, 0, 1) {
		key := day.Format(time.DateOnly)
		body.Days = append(body.Days, dayCount{Day: key, Count: byDay[key]})
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, body)
}

// utcDay is the UTC midnight starting t's day.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
