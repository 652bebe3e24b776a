package api

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/fixture"
)

// metricValue is the value of a metric line of GET /metrics (name with its
// labels, as printed), or -1 if absent.
func metricValue(t testing.TB, b *testBundle, series string) float64 {
	t.Helper()
	resp, body := b.get(t, "/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return -1
}

// TestMetrics: requests, latencies, errors by kind and exported rows are
// counted.
func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, token := b.owner(t, "team")
	b.page(t, org, token, "")
	b.page(t, org, token, "")
	b.get(t, "/api/orgs/"+org+"/audit?limit=0", token)
	b.get(t, "/api/audit/actions", "")
	if resp, body := b.get(t, "/api/orgs/"+org+"/audit?format=csv", token); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Made-up methods all count as one label value, not a series each.
	for _, method := range []string{"X1", "X2", "BREW"} {
		req, _ := http.NewRequest(method, b.base+"/api/audit/actions", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for series, want := range map[string]float64{
		`auditlog_http_requests_total{code="405",method="other",route="unmatched"}`:              3,
		`auditlog_http_requests_total{code="200",method="GET",route="/api/orgs/:id/audit"}`:      3,
		`auditlog_http_requests_total{code="400",method="GET",route="/api/orgs/:id/audit"}`:      1,
		`auditlog_http_request_duration_seconds_count{method="GET",route="/api/orgs/:id/audit"}`: 4,
		`auditlog_http_errors_total{kind="invalid-parameter"}`:                                   1,
		`auditlog_http_errors_total{kind="unauthorized"}`:                                        1,
		`auditlog_exported_rows_total`:                                                           0,
	} {
		if got := metricValue(t, b, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if metricValue(t, b, "process_resident_memory_bytes") <= 0 {
		t.Error("no process metrics")
	}
}

// The leaves past their retention still stored are counted by what keeps
// them, and the time the oldest has been kept past its expiry shown.
func TestRetentionMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	org, _ := b.owner(t, "free")
	expired := time.Now().Add(-10 * 24 * time.Hour)
	fixture.Event(t, b.admin, fixture.EventOpts{OrgID: org, OccurredAt: expired})
	for series, want := range map[string]float64{
		`auditlog_retention_expired_leaves{held_by="nothing"}`:      1,
		`auditlog_retention_expired_leaves{held_by="plan_change"}`:  0,
		`auditlog_retention_expired_leaves{held_by="transactions"}`: 0,
	} {
		if got := metricValue(t, b, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// The leaf's day ended less than 10 days ago, and it expired 7 days after.
	if got := metricValue(t, b, "auditlog_retention_expired_for_seconds"); got <= 0 || got > (3*24*time.Hour).Seconds() {
		t.Errorf("auditlog_retention_expired_for_seconds = %v, want up to 3 days", got)
	}
}

// TestRateLimit: a token that makes more than its share gets 429 with
// Retry-After, other tokens are unaffected, and the bucket refills with time.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64 // seconds after now, on the server's clock
	start := time.Now()
	b := setup(t, Config{RateLimit: 1, RateBurst: 2, Now: func() time.Time { return start.Add(time.Duration(clock.Load()) * time.Second) }})
	org, token := b.owner(t, "team")
	_, other := b.owner(t, "team")
	for range 2 {
		b.page(t, org, token, "")
	}
	resp, body := b.get(t, "/api/orgs/"+org+"/audit", token)
	wantProblem(t, resp, body, http.StatusTooManyRequests)
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	if resp, body := b.get(t, "/api/audit/actions", other); resp.StatusCode != http.StatusOK {
		t.Errorf("another token was limited: %d %s", resp.StatusCode, body)
	}
	clock.Add(1)
	b.page(t, org, token, "")
}
