package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/retention"
)

// metrics are what GET /metrics shows, on a registry of the server's own.
type metrics struct {
	registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	errors       *prometheus.CounterVec
	exportedRows prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditlog_http_requests_total",
			Help: "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "auditlog_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, to the last byte (a CSV export's whole stream), by route.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 10, 60, 300},
		}, []string{"route", "method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditlog_http_errors_total",
			Help: "Error responses, by problem kind (invalid-parameter, unauthorized, internal, ...); client-gone counts requests abandoned by the client.",
		}, []string{"kind"}),
		exportedRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_exported_rows_total",
			Help: "Events streamed in exports (CSV and NDJSON).",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.errors, m.exportedRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe counts and times every request.
func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	defer func() { // also when an export is cut short by a panic
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		method := methodLabel(c.Request.Method)
		m.requests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}()
	c.Next()
}

// methodLabel is the method as a metrics label: a client may send any
// token as a method, and each new label value would be a new series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

func (m *metrics) handler() gin.HandlerFunc {
	return gin.WrapH(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
}

// sealerCollector reports the sealer's progress at each scrape, from the
// database (the sealer may run in another process).
type sealerCollector struct {
	status                     func(context.Context) (store.SealerStatus, error)
	active, behind, lastSealed *prometheus.Desc
}

func newSealerCollector(status func(context.Context) (store.SealerStatus, error)) *sealerCollector {
	return &sealerCollector{
		status: status,
		active: prometheus.NewDesc("auditlog_sealer_active",
			"1 while a sealer reads this database's replication slot, 0 when none does (no series before a sealer first ran).", nil, nil),
		behind: prometheus.NewDesc("auditlog_sealer_behind_bytes",
			"WAL written since the position the sealer last confirmed (it confirms every 10 s and when idle): what it has yet to read.", nil, nil),
		lastSealed: prometheus.NewDesc("auditlog_sealer_last_sealed_timestamp_seconds",
			"When the sealer last recorded seals, in Unix seconds.", nil, nil),
	}
}

func (c *sealerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.behind
	ch <- c.lastSealed
}

func (c *sealerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.active, err)
		return
	}
	if !st.Slot {
		return
	}
	active := 0.0
	if st.Active {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, active)
	ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(st.BehindBytes))
	if !st.LastSealed.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastSealed, prometheus.GaugeValue, float64(st.LastSealed.UnixMicro())/1e6)
	}
}

// retentionCollector reports, at each scrape, the leaves past their
// retention still stored (audit.retention_holdups; the worker may run in
// another process): how many, by what keeps them, and how long the one that
// expired first has been past its expiry.
type retentionCollector struct {
	holdups       func(context.Context, time.Time) ([]retention.Holdup, error)
	now           func() time.Time
	leaves, since *prometheus.Desc
}

// heldBy are the values of the held_by label: audit.retention_holdups's.
var heldBy = []string{"plan change", "transactions", "nothing"}

func newRetentionCollector(holdups func(context.Context, time.Time) ([]retention.Holdup, error), now func() time.Time) *retentionCollector {
	return &retentionCollector{
		holdups: holdups,
		now:     now,
		leaves: prometheus.NewDesc("auditlog_retention_expired_leaves",
			"Leaves past their tier's retention still stored, by what keeps them: plan_change (one pass at most), "+
				"transactions (a detach or drop waits for them; auditlog partitions names their pids), nothing (the next pass drops them).",
			[]string{"held_by"}, nil),
		since: prometheus.NewDesc("auditlog_retention_expired_for_seconds",
			"How long the leaf past its retention for the longest has been kept (0: none); above twice the pass interval, see held_by.", nil, nil),
	}
}

func (c *retentionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leaves
	ch <- c.since
}

func (c *retentionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := c.now()
	hs, err := c.holdups(ctx, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.leaves, err)
		return
	}
	n := map[string]int{}
	var oldest float64
	for _, h := range hs {
		n[h.HeldBy]++
		oldest = max(oldest, now.Sub(h.ExpiresAt).Seconds())
	}
	for _, by := range heldBy {
		ch <- prometheus.MustNewConstMetric(c.leaves, prometheus.GaugeValue, float64(n[by]), strings.ReplaceAll(by, " ", "_"))
	}
	ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, oldest)
}

// deliveryCollector reports each destination kind's subscriptions and
// their greatest lag at each scrape, from the database (the delivery
// worker may run in another process).
type deliveryCollector struct {
	status             func(context.Context) ([]store.DeliveryStatus, error)
	subscriptions, lag *prometheus.Desc
}

func newDeliveryCollector(status func(context.Context) ([]store.DeliveryStatus, error)) *deliveryCollector {
	return &deliveryCollector{
		status: status,
		subscriptions: prometheus.NewDesc("auditlog_delivery_subscriptions",
			"Subscriptions, by destination kind and state (active, paused, failing).", []string{"kind", "state"}, nil),
		lag: prometheus.NewDesc("auditlog_delivery_lag_events",
			"The greatest lag of an active subscription, by destination kind: its org's newest seq minus the seq it delivered.", []string{"kind"}, nil),
	}
}

func (c *deliveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.subscriptions
	ch <- c.lag
}

func (c *deliveryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lag, err)
		return
	}
	for _, s := range st {
		ch <- prometheus.MustNewConstMetric(c.subscriptions, prometheus.GaugeValue, float64(s.Subscriptions), s.Kind, s.State)
		if s.State == "active" {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.MaxLag), s.Kind)
		}
	}
}

// replicationCollector reports at each scrape whether the database is a hot
// standby and, on one, its replay lag (store.Replication).
type replicationCollector struct {
	status       func(context.Context) (store.Replication, error)
	standby, lag *prometheus.Desc
}

func newReplicationCollector(status func(context.Context) (store.Replication, error)) *replicationCollector {
	return &replicationCollector{
		status: status,
		standby: prometheus.NewDesc("auditlog_database_standby",
			"1 when the API's database is a hot standby (pg_is_in_recovery()), 0 on a primary.", nil, nil),
		lag: prometheus.NewDesc("auditlog_replay_lag_seconds",
			"On a standby, how far what it serves is behind its primary: 0 while it streams and has replayed all it received, "+
				"else the time since the last transaction it replayed committed (no series on a primary, nor while unknown: "+
				"not caught up and no transaction replayed since the standby started).", nil, nil),
	}
}

func (c *replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.standby
	ch <- c.lag
}

func (c *replicationCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.standby, err)
		return
	}
	standby := 0.0
	if r.Standby {
		standby = 1
	}
	ch <- prometheus.MustNewConstMetric(c.standby, prometheus.GaugeValue, standby)
	if r.ReplayLag != nil {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, r.ReplayLag.Seconds())
	}
}
